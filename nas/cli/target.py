"""Which study a command means: a study YAML (its name and storage) or a bare study name."""
from __future__ import annotations

from pathlib import Path

from nas.study.config import StudyConfig, load_config


def resolve_target(target: str, storage: str | None) -> tuple[str, str, StudyConfig | None]:
    """(study name, storage URL, config or None); ``--storage`` wins over the config's storage."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        config = load_config(path)
        return config.name, storage or config.storage_url(), config
    return target, storage or f"sqlite:///runs/{target}/study.db", None


def add_storage_argument(parser) -> None:
    parser.add_argument("--storage", help="Optuna storage URL (default: the study file's, else "
                                          "sqlite:///runs/<study>/study.db)")
