"""timm image classifiers (``model.library: timm``): safetensors + timm's ``config.json``.

A timm hub repository (or a local directory) holds ``config.json`` (``architecture``,
``num_classes``, ``pretrained_cfg``, optional ``label_names`` and ``model_args``) and
``model.safetensors``. The same source and safety rules as transformers checkpoints apply
(``resolve_source``: safetensors only, headers vetted, no custom code, size limit); the
architecture is built by ``timm.create_model`` from timm's own registry (never code from
the repository) and the weights are loaded strictly. Inputs are prepared with timm's data
config and eval transforms, so the row is measured the way timm evaluates the model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcval.models.errors import LoadError, NotApplicableError
from mcval.models.loading import LoadedModel, _max_download_bytes
from mcval.models.sources import resolve_source

ID_FIELD = ("model", "id")


class TimmPreprocessor:
    """timm's eval transform behind the image processor call the task makes."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, images: list[Any], return_tensors: str = "pt") -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.stack([self.transform(image) for image in images])}


def _classifier_class() -> type:
    import torch

    class TimmClassifier(torch.nn.Module):
        """A timm model with the ``config`` and ``.logits`` output the tasks read."""

        def __init__(self, model: torch.nn.Module, config: Any) -> None:
            super().__init__()
            self.model = model
            self.config = config

        def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(logits=self.model(pixel_values))

    return TimmClassifier


def timm_config(raw: dict[str, Any], data_config: dict[str, Any]) -> SimpleNamespace:
    """Labels and input size in the attribute names the tasks read (transformers')."""
    classes = int(raw.get("num_classes") or raw.get("pretrained_cfg", {}).get("num_classes"))
    names = raw.get("label_names") or raw.get("pretrained_cfg", {}).get("label_names")
    if not names or len(names) != classes:
        names = [f"LABEL_{i}" for i in range(classes)]
    channels, _, size = data_config["input_size"]
    return SimpleNamespace(
        num_labels=classes,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        num_channels=int(channels),
        image_size=int(size),
    )


CREATE_MODEL_OWN_ARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "cache_dir",
        "scriptable",
        "exportable",
        "no_jit",
        "num_classes",
        "features_only",
        "pretrained_strict",
    }
)
"""``timm.create_model`` arguments a repository's ``model_args`` may not set: they load
files (``checkpoint_path`` is a pickle ``torch.load``, so code execution), fetch weights or
change what is built; mcval sets the ones it needs itself."""

_CFG_SOURCES = ("url", "file", "hf_hub_id", "hf_hub_filename", "state_dict", "source")


def _scalar(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_scalar(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def safe_model_args(raw: Any) -> dict[str, Any]:
    """The repository's architecture arguments, refused unless plain data for the model
    class itself (``drop_rate: 0.1``), never ``create_model``'s loading arguments."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LoadError("config.json model_args must be a mapping of argument names", ID_FIELD)
    for name, value in raw.items():
        if name in CREATE_MODEL_OWN_ARGS:
            raise LoadError(
                f"config.json model_args sets {name!r}, which timm.create_model would use to "
                "load or fetch files; remove it (mcval loads model.safetensors itself)",
                ID_FIELD,
            )
        if not isinstance(name, str) or not name.isidentifier() or not _scalar(value):
            raise LoadError(
                f"config.json model_args {name!r} must be a name with a number, string, "
                "boolean or list value",
                ID_FIELD,
            )
    return dict(raw)


def _without_sources(cfg: Any) -> dict[str, Any] | None:
    """timm's pretrained config without where weights would come from (mcval never lets
    timm fetch or open weights; they are the vetted safetensors)."""
    if not isinstance(cfg, dict):
        return None
    return {k: v for k, v in cfg.items() if k not in _CFG_SOURCES} or None


def load_timm(spec: Any, repo_root: Path, device: str, policy: Any) -> LoadedModel:
    """Resolve, vet and build a timm classifier on ``device``."""
    from safetensors.torch import load_file

    try:
        import timm
    except ImportError:  # the [timm] extra (pyproject.toml says why it is separate)
        raise NotApplicableError(
            "timm models need the timm package (pip install 'mcval[timm]'), not installed "
            "on this runner"
        ) from None

    resolved = resolve_source(
        spec.id,
        spec.revision,
        None,
        repo_root,
        max_download_bytes=_max_download_bytes(policy),
        class_name="timm",
    )
    raw = resolved.config or {}
    arch = raw.get("architecture")
    if not isinstance(arch, str) or not timm.is_model(arch):
        raise LoadError(
            f"config.json names no timm architecture timm knows ({arch!r}); a timm model "
            "directory holds timm's config.json (architecture, num_classes, pretrained_cfg)",
            ID_FIELD,
        )
    model_args = safe_model_args(raw.get("model_args"))
    try:
        model = timm.create_model(
            arch,
            pretrained=False,
            num_classes=int(raw.get("num_classes") or 0) or None,
            pretrained_cfg_overlay=_without_sources(raw.get("pretrained_cfg")),
            **model_args,
        )
        state: dict[str, Any] = {}
        for path in resolved.weight_files:
            state.update(load_file(str(path)))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        why = " ".join(str(exc).split())  # torch's state-dict report spans lines
        raise LoadError(f"timm could not build {arch!r} from the checkpoint: {why}") from None
    del state
    model = model.eval().to(device)
    data_config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    config = timm_config(raw, data_config)
    loaded = LoadedModel(
        model=_classifier_class()(model, config).eval(),
        source=str(resolved.directory),
        files=list(resolved.weight_files),
        files_bytes=resolved.files_bytes,
        warnings=list(resolved.warnings),
        resolved=resolved,
        config=config,
        preprocessor=TimmPreprocessor(transform),
    )
    return loaded


def save_timm(model: Any, directory: Path, label_names: list[str] | None = None) -> Path:
    """Write a timm model as a timm hub repository does (tests and the docs' example)."""
    import json

    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(model.pretrained_cfg)
    config = {
        "architecture": cfg.get("architecture"),
        "num_classes": model.num_classes,
        "num_features": getattr(model, "num_features", None),
        "pretrained_cfg": {k: v for k, v in cfg.items() if _jsonable(v)},
    }
    if label_names:
        config["label_names"] = label_names
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    return directory


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, tuple)) or value is None
