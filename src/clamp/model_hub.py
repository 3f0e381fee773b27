"""Exported models on the Hugging Face Hub: load ``hf-hub:ORG/NAME``, write the folder to upload.

**Loading.** ``hf-hub:ORG/NAME`` (or ``hf-hub:ORG/NAME@REVISION``: a branch, tag or commit) names a Hub
repository holding an export of ``python -m clamp.export``. :func:`hub_export_files` fetches exactly its
two files, ``model.safetensors`` (tensors only) and ``clamp_model.json`` (data), with
``huggingface_hub.hf_hub_download``, into the Hub cache in its usual layout. Nothing else of the
repository is downloaded or looked at, so no code, pickle or config of it is read, let alone run
(there is no ``trust_remote_code``). With ``HF_HUB_OFFLINE=1``, or when the Hub does not answer a
3-second probe, the files come from the local cache only, and a file that is not there is a
:class:`HubModelError` at once, instead of huggingface_hub's retries. ``HF_HUB_OFFLINE``,
``HF_HUB_CACHE`` and ``HF_HOME`` are read at each call (huggingface_hub reads them once, at import).

**Writing.** ``python -m clamp.export ckpt=... format=hub out=DIR`` writes the export plus
``DIR/README.md``, a model card (:func:`model_card`): the Hub's metadata block (licence, library, tags,
dataset, task, and a ``model-index`` with the metrics of the checkpoint's own ``metrics.json``), then
what the model is, how to load it, the training command, the split manifests' hashes and the keypoints.
What the run folder does not record (no metrics, no command) is left out and the card says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp.checkpoint import EXPORT_RECORD, EXPORT_WEIGHTS, CheckpointError

HUB_PREFIX = "hf-hub:"
MODEL_CARD = "README.md"
LIBRARY_NAME = "clamp-pose"
PIPELINE_TAG = "keypoint-detection"
#: ``license:`` of a card when ``license=`` is not given: the weights' terms follow from their data and
#: CLIP weights, which the checkpoint does not record.
UNSPECIFIED_LICENSE = "other"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_OFFLINE_FLAG = "HF_HUB_OFFLINE is set"
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
#: Hub dataset names and readable names of the registered keypoint sets' datasets.
_DATASETS = {"ap10k": ("ap10k", "AP-10K"), "animalpose": ("animal-pose", "Animal-Pose"), "coco": ("coco", "COCO")}


class HubModelError(CheckpointError):
    """An ``hf-hub:`` model that cannot be named, fetched or read; the message names the repository and file."""


@dataclass(frozen=True)
class HubModel:
    """A Hub repository holding an export, at a revision (None: the default branch)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return HUB_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_hub_id(source: object) -> bool:
    """Whether ``source`` names a Hub model (``"hf-hub:ORG/NAME"``) rather than a local file or folder."""
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def parse_hub_id(source: str) -> HubModel:
    """``"hf-hub:ORG/NAME[@REVISION]"`` as a :class:`HubModel`; anything else is a :class:`HubModelError`."""
    repo_id, _, revision = source.removeprefix(HUB_PREFIX).partition("@")
    if not source.startswith(HUB_PREFIX) or not _REPO_ID.fullmatch(repo_id) or (_ and not revision):
        raise HubModelError(
            f"{source!r} is not a Hub model name: write hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION "
            "(e.g. hf-hub:my-lab/clamp-rn50-ap10k)"
        )
    return HubModel(repo_id, revision or None)


def hub_cache_dir() -> str:
    """The Hub cache folder as huggingface_hub would compute it from the environment now."""
    from huggingface_hub import constants as hf_constants

    env = os.environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return os.path.expandvars(os.path.expanduser(env[name]))
    if env.get("HF_HOME"):
        return os.path.join(os.path.expandvars(os.path.expanduser(env["HF_HOME"])), "hub")
    return hf_constants.HF_HUB_CACHE


def hub_export_files(source: str) -> tuple[Path, Path]:
    """The local paths of ``source``'s ``clamp_model.json`` and ``model.safetensors`` (module docstring)."""
    from huggingface_hub import constants as hf_constants

    from clamp.models.hub import network_reachable, offline_mode

    model = parse_hub_id(source)
    if offline_mode():
        offline = _OFFLINE_FLAG
    elif not network_reachable(hf_constants.ENDPOINT):
        offline = f"{hf_constants.ENDPOINT} cannot be reached"
    else:
        offline = None
    record = _fetch(model, EXPORT_RECORD, offline)
    return record, _fetch(model, EXPORT_WEIGHTS, offline)


def _fetch(model: HubModel, filename: str, offline: str | None) -> Path:
    """One file of ``model``: from the cache only when ``offline`` says why, else through the Hub."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache_dir()
    try:
        return Path(
            hf_hub_download(
                model.repo_id, filename, revision=model.revision, cache_dir=cache, local_files_only=offline is not None
            )
        )
    except LocalEntryNotFoundError:
        problem = f"{filename} is not in the local Hub cache ({cache}) and {offline or 'the download failed'}"
        fix = (
            f"fetch it on a connected machine (hf download {model.repo_id} {EXPORT_RECORD} {EXPORT_WEIGHTS}"
            f"{f' --revision {model.revision}' if model.revision else ''}) and copy the cache here "
            "(HF_HUB_CACHE or HF_HOME point at it)" + (", or unset HF_HUB_OFFLINE" if offline == _OFFLINE_FLAG else "")
        )
    except GatedRepoError:
        problem, fix = "the repository is gated", "accept its terms on the Hub and log in (hf auth login)"
    except RepositoryNotFoundError:
        problem = "no such repository on the Hub (or it is private)"
        fix = "check the name, or log in (hf auth login) for a private one"
    except RevisionNotFoundError:
        problem, fix = f"it has no revision {model.revision!r}", "name an existing branch, tag or commit"
    except EntryNotFoundError:
        problem = f"it has no {filename}"
        fix = "a CLAMP Hub model is the folder `python -m clamp.export ckpt=... format=hub out=DIR` writes"
    except (HfHubHTTPError, OSError) as err:
        problem, fix = f"fetching {filename} failed ({str(err).splitlines()[0]})", "try again later"
    raise HubModelError(f"{model}: {problem}; {fix}")


# ---- the model card ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFacts:
    """What the training run folder of a checkpoint records about it (for the model card).

    ``metrics``: the run's ``metrics.json`` when it scores this checkpoint, else None with the reason in
    ``metrics_note``; ``command``: the training command (from Hydra's ``.hydra/overrides.yaml``) or None;
    ``manifests``: per split manifest file name its sha256, mode and the sha256 of its sources.
    """

    folder: Path | None
    metrics: dict[str, Any] | None
    metrics_note: str | None
    command: str | None
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_facts(ckpt: Path, weights: Mapping[str, Any]) -> RunFacts:
    """What ``ckpt``'s run folder (``RUN/checkpoints/*.ckpt``) says about it; ``weights`` are its network's.

    ``RUN/metrics.json`` holds the test metrics of the checkpoint training tested: its best-AP
    ``best-*.ckpt``, else ``last.ckpt``. They are this checkpoint's when it is that file or holds the
    same weights.
    """
    ckpt = Path(ckpt)
    if ckpt.parent.name != "checkpoints":
        note = f"{ckpt} is not in a training run folder (RUN/checkpoints/*.ckpt), so no metrics.json is known for it"
        return RunFacts(None, None, note, None)
    run = ckpt.parent.parent
    metrics, note = _own_metrics(run, ckpt, weights)
    return RunFacts(run, metrics, note, _training_command(run), _manifest_hashes(run))


def _own_metrics(run: Path, ckpt: Path, weights: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    import torch

    from clamp.checkpoint import model_state_dict, read_checkpoint
    from clamp.files import read_json

    path = run / "metrics.json"
    if not path.is_file():
        return None, f"the run folder {run} has no metrics.json (evaluate with `python -m clamp.eval ckpt={ckpt}`)"
    best = sorted(ckpt.parent.glob("best-*.ckpt"))
    tested = best[-1] if best else ckpt.parent / "last.ckpt"
    if tested.resolve() != ckpt.resolve():
        if not tested.is_file():
            return None, f"{path} scores {tested.name}, which is gone"
        other = model_state_dict(read_checkpoint(tested), tested)
        same = other.keys() == weights.keys() and all(torch.equal(other[k], weights[k]) for k in weights)
        if not same:
            return None, f"{path} scores {tested.name}, whose weights differ from {ckpt.name}: export that one"
    metrics = read_json(path, "metrics file")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("AP"), (int, float)):
        return None, f"{path} holds no AP"
    return metrics, None


def _training_command(run: Path) -> str | None:
    import yaml

    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    overrides = yaml.safe_load(path.read_text())
    if not isinstance(overrides, list):
        return None
    return " ".join(["python -m clamp.train", *(shlex.quote(str(o)) for o in overrides)])


def _manifest_hashes(run: Path) -> dict[str, dict[str, Any]]:
    facts = {}
    for path in sorted(run.glob("split_manifest*.json")):
        data = path.read_bytes()
        try:
            manifest = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = {}
        sources = manifest.get("sources") if isinstance(manifest, dict) else None
        facts[path.name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "mode": manifest.get("mode") if isinstance(manifest, dict) else None,
            "sources": {
                part: {"file": src.get("file"), "sha256": src.get("sha256")}
                for part, src in sorted((sources or {}).items())
                if isinstance(src, dict)
            },
        }
    return facts


def check_license(license: str | None) -> str | None:
    """A Hub licence identifier (``apache-2.0``, ``mit``, ``cc-by-nc-4.0``, ``other``, ...) or None."""
    from clamp.errors import ClampError

    if license is None:
        return None
    license = str(license)
    if not _LICENSE_ID.fullmatch(license):
        raise ClampError(
            f"license={license!r} is not a Hub licence identifier: write one in lower case, e.g. license=mit, "
            "license=cc-by-nc-4.0 or license=other (the list: https://huggingface.co/docs/hub/repositories-licenses)"
        )
    return license


def model_card(
    record: Mapping[str, Any], run: RunFacts, *, license: str | None = None, repo_id: str | None = None
) -> str:
    """The ``README.md`` of a Hub export: the Hub's metadata block, then the card (module docstring).

    ``license`` None writes ``license: other`` with ``license_name: unspecified`` and says so in the
    card; ``repo_id`` (``ORG/NAME``) names the repository in its examples (None: ``ORG/NAME``).
    """
    from huggingface_hub import ModelCardData

    from clamp.predictor import demo_reason

    provenance = record["provenance"]
    title = repo_id.split("/")[-1] if repo_id else str(record["model"]["name"])
    tags = ["pose-estimation", "animal-pose", "keypoint-detection", "clamp", "clip", "safetensors"]
    if demo_reason(provenance):
        tags += ["demo", *(["synthetic-data"] if provenance.get("synthetic_data") else [])]
    datasets = [] if provenance.get("synthetic_data") else [_DATASETS.get(d, (d, d))[0] for d in _datasets(record)]
    metadata = ModelCardData(
        license=license or UNSPECIFIED_LICENSE,
        **({"license_name": "unspecified"} if license is None else {}),
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        datasets=datasets or None,
        model_name=title,
        eval_results=_eval_results(record, run) or None,
    )
    return f"---\n{metadata.to_yaml()}\n---\n\n# {title}\n\n" + "\n".join(_card_body(record, run, license, repo_id))


def _datasets(record: Mapping[str, Any]) -> list[str]:
    """The names of the datasets a model was trained on (the members of a multi-dataset run)."""
    provenance = record["provenance"]
    return sorted(provenance.get("datasets") or {}) or [
        str(provenance.get("dataset", record["model"]["keypoints"]["name"]))
    ]


def _scores(record: Mapping[str, Any], run: RunFacts) -> dict[str, Mapping[str, Any]]:
    """The run's test metrics per dataset (a multi-dataset run scores each member alone)."""
    if run.metrics is None:
        return {}
    return dict(run.metrics.get("datasets") or {_datasets(record)[0]: run.metrics})


def _eval_results(record: Mapping[str, Any], run: RunFacts) -> list[Any]:
    """The ``model-index`` entries: each headline OKS metric of each dataset, as ``metrics.json`` has it."""
    from huggingface_hub import EvalResult

    from clamp.cli import HEADLINE_METRICS

    results = []
    for dataset, scores in _scores(record, run).items():
        hub_name, pretty = _DATASETS.get(dataset, (dataset, dataset))
        if record["provenance"].get("synthetic_data"):
            hub_name, pretty = "synthetic", f"synthetic {pretty} (clamp.synthetic)"
        results += [
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Keypoint Detection",
                dataset_type=hub_name,
                dataset_name=pretty,
                dataset_split="test",
                metric_type=metric,
                metric_name=f"OKS {metric} (0-1)",
                metric_value=scores[metric],
            )
            for metric in HEADLINE_METRICS
            if isinstance(scores.get(metric), (int, float))
        ]
    return results


def _card_body(record: Mapping[str, Any], run: RunFacts, license: str | None, repo_id: str | None) -> list[str]:
    from clamp.cli import HEADLINE_METRICS
    from clamp.keypoints import get_keypoint_spec
    from clamp.predictor import demo_caption, demo_reason

    provenance, name = record["provenance"], str(record["model"]["name"])
    spec = get_keypoint_spec(record["model"]["keypoints"])
    hub_id = f"{HUB_PREFIX}{repo_id or 'ORG/NAME'}"
    lines = []
    if demo_reason(provenance):
        lines += [
            f"**{demo_caption(provenance, name)}.** This model was {demo_reason(provenance)}: it shows that the "
            "pipeline runs end to end and cannot find keypoints on real photos.",
            "",
        ]
    size = "x".join(str(v) for v in record["preprocessing"]["input_size"])
    data = ", ".join(_DATASETS.get(d, (d, d))[1] for d in _datasets(record))
    files = ", ".join(f"{stage}: `{f}`" for stage, f in sorted((provenance.get("annotation_files") or {}).items()))
    lines += [
        f"A {'CLAMP' if name.startswith('clamp') else 'SimpleBaseline'} animal pose model (`{name}`, input {size} px) "
        f"that finds the {spec.num_keypoints} `{spec.name}` keypoints of an animal in a box, trained with the CLAMP "
        f"reimplementation (`{LIBRARY_NAME}`). Backbone weights it started from: {_pretrained(provenance)}; "
        f"training data: {'synthetic images in ' if provenance.get('synthetic_data') else ''}{data}"
        f"{f' ({files})' if files else ''}.",
        "",
        "## Use",
        "",
        "```python",
        "import clamp",
        f'predictor = clamp.Predictor.from_pretrained("{hub_id}")',
        'animals = predictor.predict("cat.jpg", boxes=[[40, 30, 300, 260]])   # boxes [x, y, w, h]; none: whole image',
        "animals[0].named()   # {keypoint name: (x, y, score)}",
        "```",
        "",
        "```bash",
        f"python -m clamp.predict ckpt={hub_id} input=photos/",
        "```",
        "",
        ("" if repo_id else "where ORG/NAME is this repository. ")
        + "Loading fetches only `model.safetensors` (tensors) and `clamp_model.json` (the rebuild recipe, "
        "keypoints, preprocessing): no code from this repository runs. Once cached, it loads offline with "
        f'`HF_HUB_OFFLINE=1`. `clamp.create_model("{name}", pretrained="{hub_id}")` gives the network.',
        "",
        "## Evaluation",
        "",
    ]
    scores = _scores(record, run)
    if scores:
        lines += [
            "OKS keypoint metrics on the test split, from the training run's `metrics.json` (flip test, "
            "ground-truth boxes; the model-index above holds the same values as fractions):",
            "",
            "| dataset | " + " | ".join(HEADLINE_METRICS) + " |",
            "|---|" + "---|" * len(HEADLINE_METRICS),
        ]
        for dataset, values in scores.items():
            cells = [
                f"{100 * values[m]:.1f}" if isinstance(values.get(m), (int, float)) else "-" for m in HEADLINE_METRICS
            ]
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    else:
        lines.append(f"No metrics are given: {run.metrics_note}.")
    lines += ["", "## Training", ""]
    if run.command:
        lines += ["```bash", run.command, "```"]
    else:
        lines.append("The training command is not recorded (no `.hydra/overrides.yaml` in the run folder).")
    if run.manifests:
        lines += ["", "Split manifests (sha256 of the manifest and of the annotation files it was built from):", ""]
        lines += ["| manifest | mode | sha256 | part: source file sha256 |", "|---|---|---|---|"]
        for file_name, facts in run.manifests.items():
            sources = "; ".join(f"{part}: `{s['file']}` `{s['sha256']}`" for part, s in facts["sources"].items())
            lines.append(f"| `{file_name}` | {facts['mode']} | `{facts['sha256']}` | {sources} |")
    elif run.folder is not None:
        lines += ["", "The run folder holds no split manifest."]
    lines += ["", "## Keypoints", "", ", ".join(f"{i}: {n}" for i, n in enumerate(spec.keypoint_names))]
    lines += ["", "## Licence", ""]
    if license is None:
        lines.append(
            "Not specified at export (`python -m clamp.export ... license=ID` sets it). The terms of these "
            "weights follow from their training data and the CLIP weights they started from; check those "
            "before use. The CLAMP code is Apache-2.0."
        )
    else:
        lines.append(f"`{license}`, as given at export. The CLAMP code is Apache-2.0.")
    return [*lines, ""]


def _pretrained(provenance: Mapping[str, Any]) -> str:
    if "pretrained" not in provenance:
        return "not recorded"
    return "none (random)" if provenance["pretrained"] is None else f"`{provenance['pretrained']}`"
