"""Render README.md and docs/*.md from templates, filling every measured number from a results file.

Templates live in docs/templates/ (README.md.in -> README.md, <name>.md.in -> docs/<name>.md).
In a template:

- ``{{ FILE:PATH | FORMAT }}`` is a number (or text) read from ``benchmarks/results/FILE`` (JSON),
  at ``PATH`` (keys separated by dots; ``["a key"]`` quotes a key; ``[field=value]`` picks the
  element of a list whose ``field`` is ``value``: claims are addressed by key, never by list
  position), formatted with ``FORMAT``: a Python format spec, optionally after a scale
  (``*1000 .1f``).
- ``{{ include FILE.md#NAME }}`` inserts the block a benchmark wrote between
  ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in ``benchmarks/results/FILE.md``.
- ``{= TEXT }`` is literal text holding a number that is not a measurement (a parameter, a
  version, a definition); it is written out as TEXT.

Every other digit in a template's prose is an error (code spans and code blocks, link targets
and HTML comments excepted): tests/test_claims.py renders the templates again and checks that
the committed docs are identical, that every cited results file records its machine, date, git
revision and command, and that no number was typed by hand. The manifest of claims (claim ->
file -> path -> value) is written to docs/claims.json.

Every cited results file must also come from a clean tree (its run recorded no local edits) at
a revision after which nothing it measures changed: :data:`MEASURES` lists, per benchmark, the
paths whose changes make its numbers stale.

Run: python benchmarks/render_docs.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "docs" / "templates"
RESULTS = ROOT / "benchmarks" / "results"
CLAIMS = ROOT / "docs" / "claims.json"

PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}")
LITERAL = re.compile(r"\{=\s*(.+?)\s*\}")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![A-Za-wyz\d_]|\.\d)")  # "2.5x" counts
# Names that contain digits but are not numbers.
NAMES = ("ResNet-18", "LLaVA-1.5-7B", "LLaVA-1.5", "x86-64", "Q4_1", "L2", "L-inf", "IEEE TSE", "ROS 2", "ROS 1",
         "H.264", "16-bit", "Gemma 3")
PATH_TOKEN = re.compile(r'\[(\d+)\]|\["([^"]+)"\]|\[([^\]"=]+)=([^\]]+)\]|([^.\[\]]+)')
# What each benchmark's numbers depend on (git pathspecs): a change there since the recorded
# revision makes them stale. The language monitor's runs measure the heads package and what it
# calls; every classifier benchmark measures the package except the language monitor.
_PACKAGE_BUT_HEADS = ["nnwatch", ":!nnwatch/heads", ":!nnwatch/cli/heads.py", ":!nnwatch/cli/language.py",
                      "benchmarks/_common.py"]
# The per-object kernels and the frame-level rule belong to the object monitor; the language
# monitor imports neither (tests/heads/test_language_imports.py checks it).
_LANGUAGE = ["nnwatch/heads", "nnwatch/calibration", "nnwatch/kernels", "nnwatch/profile", "nnwatch/timing.py",
             ":!nnwatch/kernels/roi.py", ":!nnwatch/kernels/roi_reference.py", ":!nnwatch/calibration/frame_level.py",
             "nnwatch/eval/metrics.py", "nnwatch/eval/provenance.py", "nnwatch/cli/language.py",
             "nnwatch/cli/heads.py", "nnwatch/monitor/budget.py", "nnwatch/monitor/results.py",
             "benchmarks/language.sh"]
# The recorded head search (smollm2_heads.json, reused by language.sh through reuse_search.py)
# measures the search's own path: the CLI command, model loading, the scorer, the sweep, the
# angles and the search (fit.py lends it two L2 constants, nothing else); the fit, calibration
# and evaluation that later steps run on its heads are not part of it.
_HEAD_SEARCH = ["nnwatch/heads/search.py", "nnwatch/heads/angles.py", "nnwatch/heads/collect.py",
                "nnwatch/heads/prompts.py", "nnwatch/heads/scores.py", "nnwatch/heads/logistic.py",
                "nnwatch/heads/detector_file.py", "nnwatch/heads/loading.py", "nnwatch/heads/weights_cache.py",
                "nnwatch/heads/torch_scorer.py", "nnwatch/heads/encoders.py", "nnwatch/heads/text_encoder.py",
                "nnwatch/heads/arch.py", "nnwatch/cli/heads.py", "nnwatch/_progress.py", "nnwatch/_io.py",
                "nnwatch/eval/provenance.py", "benchmarks/language.sh", "benchmarks/reuse_search.py"]
# Changes that cannot move a result's numbers, waived by their exact content: a result is not stale
# for `path` when the file at its measurement is the file just before `commit` and the file now is
# the file `commit` wrote (`commit` may be a chain "first..last": the file before `first`, the file
# `last` wrote, every change between waived for the reasons given). Any other change to the path
# makes it stale as before. Each says why.
_CLASSIFIER_STEMS = ("detection", "fusion_study", "distributed", "kernels", "memory", "mobilenet_taps", "overhead",
                     "precision", "stream", "tap_budget", "perception_loop", "recordings", "objects", "public_detector")
_LANGUAGE_STEMS = ("heads_bench", "heads_evaluation", "heads_fit", "heads_bench_gemma3", "heads_evaluation_gemma3",
                   "heads_fit_gemma3", "gemma3_heads", "language_start")
_NOT_OBJECT_STEMS = tuple(s for s in _CLASSIFIER_STEMS if s not in ("objects", "public_detector")) + ("reliability",)
_LIVE_OBJECT_MEMBERS = ("object detectors only (no classifier benchmark or the crash-safety tests import the object "
                        "monitor): the live object call runs only the fused verdict's members")
_DETECTOR_REFUSALS = ("and detector input refused before onnxruntime sees it (wrong channel count, layout fields of "
                      "the wrong type), integer frames cast, clearer layout hints")
UNMEASURED_CHANGES = [
    (_CLASSIFIER_STEMS, "nnwatch/_optional.py", "cf01fcc5908fb86de428b26f047aa79d17e38097",
     "the message for a missing scikit-learn also names the language monitor's text baseline"),
    (_CLASSIFIER_STEMS, "nnwatch/cli/commands.py", "cf01fcc5908fb86de428b26f047aa79d17e38097",
     "nnwatch info says a text_tfidf detector reads the prompt's text (language detector files only)"),
    (_CLASSIFIER_STEMS, "nnwatch/profile/store.py", "ae7871f752a21b70f3817c915d274028065cfe11",
     "load_profile refuses a file that does not start with a zip entry, and numpy's header-parser errors read as a "
     "damaged profile; these benchmarks load only profiles they wrote, which load as before"),
    (("smollm2_heads",), "nnwatch/heads/collect.py", "ff3e1d02f074a32624b5a2fc31c58a41e49e44b2",
     "a sweep also keeps each prompt's text (a tuple of the strings it was given); angles, states and timings are "
     "computed as before"),
    (("smollm2_heads",), "nnwatch/heads/prompts.py",
     "ff3e1d02f074a32624b5a2fc31c58a41e49e44b2..70043f9a7b6bb7d7f1ead7e55fc769f6dceca868",
     "adds prompt_text (an image prompt's text, None for model inputs given as a dict), which the search reads "
     "only to keep the texts"),
    (("smollm2_heads",), "nnwatch/heads/scores.py", "ff3e1d02f074a32624b5a2fc31c58a41e49e44b2",
     "registers the text baseline's detector kind; the head detectors the search writes are unchanged"),
    (("smollm2_heads",), "benchmarks/language.sh",
     "83f1fe11faa89c7d8f7c0537de715037f1190aa9..a42bdc9e9959c2e758b72e83c8cd73f9b876fa0b",
     "--search runs the same search command with --model smollm2 (its default) spelled out and the same "
     "outputs; --model without a value is refused; the rest of the script is the fit and evaluation after "
     "the search"),
    (_LANGUAGE_STEMS, "benchmarks/language.sh",
     "a42bdc9e9959c2e758b72e83c8cd73f9b876fa0b",
     "--model without a value is refused with exit 2 before any work; a run given a value runs as before"),
    (_LANGUAGE_STEMS + ("readme_timings",), "nnwatch/heads/prompts.py", "70043f9a7b6bb7d7f1ead7e55fc769f6dceca868",
     "a prompt file that is not UTF-8 or not JSON is refused with a message saying what a prompt file is; "
     "files that load load as before"),
    (_LANGUAGE_STEMS + ("readme_timings", "smollm2_heads"), "nnwatch/cli/heads.py", "70043f9a7b6bb7d7f1ead7e55fc769f6dceca868",
     "heads guard refuses an empty prompt before loading the detector (the encoder refused it after); "
     "every other path is unchanged"),
    (("readme_timings",), "tests/heads/test_cli_heads.py", "70043f9a7b6bb7d7f1ead7e55fc769f6dceca868",
     "adds three tests of those refusals, under 0.5 s together on this machine, below the 1 s the README "
     "rounds the suite's time to"),
    (_NOT_OBJECT_STEMS, "nnwatch/cli/objects.py", "16409fbc6ecde225c14b7e718d44ac1df73562aa..2d1fa89ee9767e4dd69f884e8ff3c6b47d5557ab",
     _LIVE_OBJECT_MEMBERS + "; " + _DETECTOR_REFUSALS),
    (_NOT_OBJECT_STEMS, "nnwatch/distributed/screen_objects.py", "16409fbc6ecde225c14b7e718d44ac1df73562aa",
     _LIVE_OBJECT_MEMBERS),
    (_NOT_OBJECT_STEMS, "nnwatch/objects/evaluation.py", "16409fbc6ecde225c14b7e718d44ac1df73562aa",
     _LIVE_OBJECT_MEMBERS),
    (_NOT_OBJECT_STEMS, "nnwatch/objects/object_monitor.py", "16409fbc6ecde225c14b7e718d44ac1df73562aa..2d1fa89ee9767e4dd69f884e8ff3c6b47d5557ab",
     _LIVE_OBJECT_MEMBERS + "; " + _DETECTOR_REFUSALS),
    (_NOT_OBJECT_STEMS, "nnwatch/objects/scorer.py", "16409fbc6ecde225c14b7e718d44ac1df73562aa",
     _LIVE_OBJECT_MEMBERS),
    (_NOT_OBJECT_STEMS, "nnwatch/objects/layouts.py", "2d1fa89ee9767e4dd69f884e8ff3c6b47d5557ab",
     _DETECTOR_REFUSALS),
    (_NOT_OBJECT_STEMS, "nnwatch/objects/instrument_detector.py", "2d1fa89ee9767e4dd69f884e8ff3c6b47d5557ab",
     _DETECTOR_REFUSALS),
    (("smollm2_heads",), "nnwatch/_io.py", "93eb99fc8358ff0a6f41af5fb10512c17518e38a",
     "an output named as a FIFO or character device is written in place; the search wrote regular files"),
]
MEASURES = {
    "detection": _PACKAGE_BUT_HEADS + ["benchmarks/detection.py"],
    "fusion_study": _PACKAGE_BUT_HEADS + ["benchmarks/fusion_study.py", "benchmarks/detection.py"],
    "distributed": _PACKAGE_BUT_HEADS + ["benchmarks/distributed.py"],
    "kernels": _PACKAGE_BUT_HEADS + ["benchmarks/kernels.py"],
    "memory": _PACKAGE_BUT_HEADS + ["benchmarks/memory.py"],
    "mobilenet_taps": _PACKAGE_BUT_HEADS + ["benchmarks/taps.py"],
    "overhead": _PACKAGE_BUT_HEADS + ["benchmarks/overhead.py"],
    "precision": _PACKAGE_BUT_HEADS + ["benchmarks/precision.py"],
    "reliability": _PACKAGE_BUT_HEADS + ["benchmarks/reliability.py", "tests/reliability/test_crash_safety.py"],
    "stream": _PACKAGE_BUT_HEADS + ["benchmarks/stream.py"],
    "tap_budget": _PACKAGE_BUT_HEADS + ["benchmarks/tap_budget.py"],
    "perception_loop": _PACKAGE_BUT_HEADS + ["examples/perception_loop.py"],
    "recordings": _PACKAGE_BUT_HEADS + ["benchmarks/recordings.py"],
    "objects": _PACKAGE_BUT_HEADS + ["benchmarks/objects.py"],
    "public_detector": _PACKAGE_BUT_HEADS + ["benchmarks/public_detector.py"],
    "install_size": ["pyproject.toml", "constraints.txt", "benchmarks/install_size.py"],
    "readme_timings": ["nnwatch", "tests", "examples", "pyproject.toml", "constraints.txt", "benchmarks/readme_timings.py"],
    "heads_bench": _LANGUAGE,
    "heads_evaluation": _LANGUAGE,
    "heads_fit": _LANGUAGE,
    "smollm2_heads": _HEAD_SEARCH,
    "heads_bench_gemma3": _LANGUAGE,
    "heads_evaluation_gemma3": _LANGUAGE,
    "heads_fit_gemma3": _LANGUAGE,
    "gemma3_heads": _LANGUAGE,
    "language_start": _LANGUAGE + ["benchmarks/language_start.py", "nnwatch/_progress.py"],
}


class DocsError(Exception):
    """A template cites something that is not there, or types a number by hand."""


def output_path(template: Path) -> Path:
    """Where a template renders to."""
    name = template.name.removesuffix(".in")
    return ROOT / name if name == "README.md" else ROOT / "docs" / name


def lookup(data: Any, path: str) -> Any:
    """Follow ``path`` (``a.b[model=lenet]["c d"]``) into parsed JSON."""
    value = data
    for index, quoted, field, wanted, key in PATH_TOKEN.findall(path):
        if index:
            raise DocsError(f"{path!r}: [{index}] addresses a claim by list position; select the element by a "
                            "field instead, [field=value]")
        if field:
            found = [item for item in value if isinstance(item, dict) and str(item.get(field)) == wanted]
            if len(found) != 1:
                raise KeyError(f"{len(found)} elements with {field}={wanted}")
            value = found[0]
        else:
            k = quoted or key
            if k == "" or k == ".":
                continue
            value = value[k]
    return value


def fmt(value: Any, spec: str) -> str:
    """Format a value with ``[*scale] spec``; the spec ``len`` gives a list's length, ``names`` its
    items joined by commas."""
    spec = spec.strip()
    if spec == "len":
        return str(len(value))
    if spec == "names":
        return ", ".join(str(v) for v in value)
    scale = None
    if spec.startswith("*"):
        head, _, spec = spec.partition(" ")
        scale = float(head[1:])
    if scale is not None:
        value = value * scale
    return format(value, spec) if spec else str(value)


def _json(name: str, cache: dict[str, Any]) -> Any:
    if name not in cache:
        path = RESULTS / name
        if not path.is_file():
            raise DocsError(f"results file {name} does not exist (run the benchmark that writes it)")
        cache[name] = json.loads(path.read_text())
    return cache[name]


def _block(name: str, section: str) -> str:
    path = RESULTS / name
    if not path.is_file():
        raise DocsError(f"results file {name} does not exist")
    text = path.read_text()
    m = re.search(rf"<!-- begin {re.escape(section)} -->\n(.*?)<!-- end {re.escape(section)} -->", text, re.S)
    if m is None:
        raise DocsError(f"{name} has no block {section!r}")
    return m.group(1).rstrip("\n")


def render(template: Path, cache: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Render one template; return the text and its claims."""
    text = template.read_text()
    claims: list[dict[str, Any]] = []
    doc = str(output_path(template).relative_to(ROOT))

    def replace(m: re.Match) -> str:
        body = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        if body.startswith("include "):
            ref = body[len("include "):].strip()
            name, _, section = ref.partition("#")
            claims.append({"doc": doc, "template_line": line, "source": name, "block": section})
            return _block(name, section)
        ref, _, spec = body.partition("|")
        name, _, path = ref.strip().partition(":")
        try:
            value = lookup(_json(name, cache), path.strip())
        except DocsError as exc:
            raise DocsError(f"{template.name}:{line}: {exc}") from None
        except (KeyError, IndexError, TypeError) as exc:
            raise DocsError(f"{template.name}:{line}: {name} has no {path.strip()!r} ({type(exc).__name__}: {exc})") from None
        shown = fmt(value, spec)
        claims.append({"doc": doc, "template_line": line, "source": name, "path": path.strip(),
                       "format": spec.strip(), "value": value if isinstance(value, (int, float, str)) else None,
                       "shown": shown})
        return shown

    out = PLACEHOLDER.sub(replace, text)
    out = LITERAL.sub(lambda m: m.group(1), out)
    return out, claims


def hand_typed_numbers(template: Path) -> list[str]:
    """Digits in a template's prose that come neither from a results file nor a ``{= }`` literal."""
    problems = []
    in_code = False
    for i, line in enumerate(template.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.startswith("    "):  # fenced or indented code
            continue
        stripped = line
        for name in NAMES:
            stripped = stripped.replace(name, " ")
        stripped = PLACEHOLDER.sub(" ", stripped)
        stripped = LITERAL.sub(" ", stripped)
        stripped = re.sub(r"`[^`]*`", " ", stripped)  # code spans
        stripped = re.sub(r"\]\([^)]*\)", "] ", stripped)  # link targets
        stripped = re.sub(r"<!--.*?-->", " ", stripped)
        stripped = re.sub(r"https?://\S+", " ", stripped)
        for m in NUMBER.finditer(stripped):
            problems.append(f"{template.name}:{i}: hand-typed number {m.group(0)!r} in: {line.strip()[:100]}")
    return problems


def provenance_problems(claims: list[dict[str, Any]], cache: dict[str, Any]) -> list[str]:
    """Cited results files that do not say where they came from."""
    problems = []
    for name in sorted({c["source"] for c in claims}):
        if name.endswith(".json"):
            data = _json(name, cache)
            # A language detector file keeps its record under info.provenance (fit) or search.provenance.
            if "machine" not in data:
                data = data.get("info", {}).get("provenance") or data.get("search", {}).get("provenance", data)
            missing = [k for k in ("machine", "date", "git", "command") if k not in data]
            if missing:
                problems.append(f"{name}: no {', '.join(missing)} recorded")
        else:
            first = (RESULTS / name).read_text().splitlines()[0]
            if not ("Machine:" in first and " at git " in first and " by `" in first):
                problems.append(f"{name}: its first line does not record machine, date, git revision and command")
    return problems


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _record(name: str, cache: dict[str, Any]) -> dict[str, Any] | None:
    """The provenance record of a cited results file (JSON, or the JSON beside a markdown file)."""
    json_name = name if name.endswith(".json") else str(Path(name).with_suffix(".json"))
    if not (RESULTS / json_name).is_file():
        return None
    data = _json(json_name, cache)
    if "git" not in data:  # a language detector file keeps its record under info.provenance / search.provenance
        data = data.get("info", {}).get("provenance") or data.get("search", {}).get("provenance", data)
    return data


def _waived(stem: str, revision: str, path: str) -> bool:
    """Whether the change to ``path`` since ``revision`` is exactly a change :data:`UNMEASURED_CHANGES` waives for ``stem``."""
    for stems, waived_path, commit, _why in UNMEASURED_CHANGES:
        if stem not in stems or path != waived_path:
            continue
        first, _, last = commit.partition("..")
        then = _git("rev-parse", f"{revision}:{path}").stdout.strip()
        before = _git("rev-parse", f"{first}^:{path}").stdout.strip()
        after = _git("rev-parse", f"{last or first}:{path}").stdout.strip()
        now = _git("hash-object", "--", path).stdout.strip()
        if then and then == before and now == after:
            return True
    return False


def staleness_problems(claims: list[dict[str, Any]], cache: dict[str, Any]) -> list[str]:
    """Cited results from a dirty tree, or older than a change to what their benchmark measures."""
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return []  # not a git checkout (an unpacked release): nothing to compare with
    shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    problems = []
    for name in sorted({c["source"] for c in claims}):
        record = _record(name, cache)
        stem = Path(name).stem
        if record is None:
            continue  # provenance_problems names it
        git = record.get("git", {})
        revision = str(git.get("revision", ""))
        if git.get("dirty") is not False:
            problems.append(f"{name}: recorded {'local edits' if git.get('dirty') else 'no clean-tree record'} "
                            f"(revision {revision[:10]}); run its benchmark again at a clean commit")
            continue
        if _git("cat-file", "-e", f"{revision}^{{commit}}").returncode != 0:
            if not shallow:
                problems.append(f"{name}: revision {revision[:10]} is not in this repository's history")
            continue  # a shallow clone cannot tell: the full history checks it
        measured = MEASURES.get(stem)
        if measured is None:
            problems.append(f"{name}: benchmarks/render_docs.py does not say which paths it measures (MEASURES)")
            continue
        changed = [path for path in _git("diff", "--name-only", revision, "--", *measured).stdout.split()
                   if not _waived(stem, revision, path)]
        if changed:
            problems.append(f"{name}: measured at {revision[:10]}, but what it measures changed since "
                            f"({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}); run its benchmark again")
    return problems


def build() -> tuple[dict[Path, str], list[dict[str, Any]], list[str]]:
    """Render every template; return outputs, claims and problems."""
    cache: dict[str, Any] = {}
    outputs, claims, problems = {}, [], []
    for template in sorted(TEMPLATES.glob("*.md.in")):
        problems += hand_typed_numbers(template)
        try:
            text, found = render(template, cache)
        except DocsError as exc:
            problems.append(str(exc))
            continue
        outputs[output_path(template)] = text
        claims += found
    problems += provenance_problems(claims, cache)
    problems += staleness_problems(claims, cache)
    return outputs, claims, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; write nothing")
    args = ap.parse_args()
    outputs, claims, problems = build()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    manifest = json.dumps(claims, indent=1) + "\n"
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, t in outputs.items() if not p.is_file() or p.read_text() != t]
        if not CLAIMS.is_file() or CLAIMS.read_text() != manifest:
            stale.append(str(CLAIMS.relative_to(ROOT)))
        if stale:
            print("out of date (run python benchmarks/render_docs.py): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text)
    CLAIMS.write_text(manifest)
    print(f"rendered {len(outputs)} documents with {len(claims)} claims")
    return 0


if __name__ == "__main__":
    sys.exit(main())
