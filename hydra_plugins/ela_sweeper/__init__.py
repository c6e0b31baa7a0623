"""ela's Hydra sweeper (Hydra loads sweeper plugins from the `hydra_plugins` namespace only)."""
