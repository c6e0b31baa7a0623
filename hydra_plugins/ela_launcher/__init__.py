"""ela's Hydra launcher (Hydra loads launcher plugins from the `hydra_plugins` namespace only)."""
