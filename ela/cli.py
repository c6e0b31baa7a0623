"""Command-line keys checked before Hydra: a typo gets ela's suggestion and exit code 2, before any work."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


def unknown_key(argv: list[str], known: Iterable[str], sections: Iterable[str] = ()) -> tuple[str, list[str]] | None:
    """The first `key=value` override whose key is not known, with close matches.

    A key below a known leaf (`dataset.label_map.neg`, where `label_map` takes a mapping) is known; a key
    below a section (`measure.gpu_meter`) must be one of the section's own keys.
    """
    known, sections = list(known), set(sections)
    leaves = [k for k in known if k not in sections]
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg.startswith(("+", "~")):
            continue  # flags (-m, --help, --cfg ...), and Hydra's explicit add/delete
        key = arg.split("=", 1)[0]
        if key.startswith(("hydra.", "hydra/")) or key in known or any(key.startswith(f"{k}.") for k in leaves):
            continue
        return key, difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return None


def check_keys(prog: str, argv: list[str], known: Iterable[str], sections: Iterable[str] = ()) -> None:
    """Exit 2 with one line naming an unknown key (and the key meant, when one is close)."""
    known = list(known)
    found = unknown_key(argv, known, sections)
    if found is None:
        return
    key, close = found
    hint = f": did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    print(f"{prog}: unknown key {key!r}{hint}", file=sys.stderr)
    sys.exit(2)


def check_run_keys(argv: list[str], conf_dir: str) -> None:
    """`check_keys` for `python -m ela.run`, fast for the usual command.

    The default config's keys first (one compose); every option of every group (~20 composes, seconds on
    a small VM) only when a key is not among those.
    """
    if unknown_key(argv, *run_keys(conf_dir, every_option=False)) is not None:
        check_keys("ela.run", argv, *run_keys(conf_dir))


def run_keys(conf_dir: str, every_option: bool = True) -> tuple[list[str], list[str]]:
    """Every key `python -m ela.run` accepts (sections, groups, dotted keys), and which are sections.

    Keys of every option of every group count (`task.max_new_tokens` exists with task=generation only);
    every_option=False: the default config's keys only (a subset).
    """
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ela.tracking.identity import flatten

    keys: set[str] = set()
    sections: set[str] = set()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
        groups = [g for g in cfg.hydra.runtime.choices if not g.startswith("hydra/")]  # experiment, model, ...
        options = [[]] + [
            [f"{g}={f.stem}"] for g in groups if g != "experiment" for f in sorted(Path(conf_dir, g).glob("*.yaml"))
        ]
        options = options if every_option else [[]]
        for override in options:
            data = OmegaConf.to_container(compose("config", overrides=override), resolve=False)
            data.pop("hydra", None)
            sections |= {k for k, v in data.items() if isinstance(v, dict)}
            keys |= set(data) | set(flatten(data))
    return sorted(keys | set(groups)), sorted(sections)
