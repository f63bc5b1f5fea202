"""Every attack, once more, in one count: the static corpus of ``tests/test_adversarial.py``
(the first release's cases and those added for issue 15, through ``mcval check``; the
corpus' slow cases need a measuring child and are counted in that module) plus the
issue-15 attacks on the workflows (publish, ownership, unmeasured changes, log injection,
sizes, listings, runner caches).

Each attack records whether it was refused with a clear answer, whether a traceback
escaped, and whether it left a side effect (a changed or created file, a forged row
published, a command reaching the log). The test prints
``attacks: N tried, N refused, 0 tracebacks, 0 side effects`` and fails otherwise.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_adversarial as corpus
from ci_helpers import ci_main, read_outputs
from fake_github import FakeGithub
from test_ci_ownership import BASE, FORK, checkout
from test_ci_publish_vetting import hostile_results, merged_checkout

from mcval.ci.actions import LogGuard, log_safe
from mcval.ci.hygiene import cache_problems
from mcval.cli import main as mcval_main
from mcval.submission.schema import DatasetSpec
from mcval.tasks.dataset_size import DatasetFiles, DatasetTooLargeError, check_dataset_download

ISSUE15_CASES = {
    "seed-5000-digits",
    "weights-300-hex-digits",
    "seed-60000-hex-digits",
    "seed-past-32-bits",
    "dataset-path-local-folder",
    "dataset-path-repo-folder",
    "dataset-path-loader-fasta",
    "dataset-path-loader-conll",
    "dataset-path-dot-folder",
}
"""Corpus cases added for issue 15 (items 5 and 6); the rest are the first release's."""


@dataclass
class Result:
    name: str
    refused: bool
    traceback: bool
    side_effect: bool


def run_attack(name: str, attack: Callable[[], tuple[bool, bool]], watched: list[Path]) -> Result:
    """``attack()`` returns (refused, side effect seen by the attack itself); files under
    ``watched`` must not change."""
    before = corpus.snapshot(*watched)
    try:
        refused, effect = attack()
        crashed = False
    except BaseException:
        refused, effect, crashed = False, False, True
    changed = corpus.changes(before, corpus.snapshot(*watched))
    return Result(name, refused, crashed, effect or bool(changed))


# -- the first release's corpus -------------------------------------------------------------


def corpus_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Result]:
    results = []
    for case in corpus.CASES:
        home = tmp_path / "corpus" / case.name
        root = home / "repo"
        (root / ".git").mkdir(parents=True)
        (root / "data").mkdir()
        (root / "data" / "eval.jsonl").write_text('{"text": "a b", "label": "x"}\n')
        (home / "outside").mkdir()
        world = corpus.World(root, home / "outside", home / "results")
        cwd = Path.cwd()
        os.chdir(root)
        try:
            corpus.prepare(world, case)

            def attack(case: corpus.Case = case, root: Path = root) -> tuple[bool, bool]:
                capsys.readouterr()
                code = mcval_main(["check", case.path, "--repo", str(root)])
                lines = capsys.readouterr().out.splitlines()
                wanted = ["error  " + e.replace("<ROOT>", str(root)) for e in case.errors]
                return code == 2 and all(w in lines for w in wanted), False

            results.append(run_attack(case.name, attack, [root, home / "outside"]))
        finally:
            os.chdir(cwd)
    return results


# -- issue 15 --------------------------------------------------------------------------------


def issue15_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Result]:
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    results: list[Result] = []
    with FakeGithub() as fake:
        fake.add_token("rw", "contents:write")
        base_files = {"README.md": "# Course\n", **corpus_base_files()}
        fake.create_repo(BASE, base_files)
        fake.fork(BASE, FORK)
        monkeypatch.setenv("GITHUB_TOKEN", "rw")
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)

        def step(tag: str) -> Path:
            folder = tmp_path / tag
            folder.mkdir()
            monkeypatch.setenv("GITHUB_OUTPUT", str(folder / "output"))
            return folder

        def pr_attack(
            tag: str, files: dict[str, str | None], policy: str | None, code: int, **pr: str
        ) -> None:
            job = step(tag)
            base = checkout(job, policy=policy) if policy != "-" else checkout(job)

            def attack() -> tuple[bool, bool]:
                pull = fake.open_pull(
                    BASE,
                    FORK,
                    files,
                    author=pr.get("author", "alice"),
                    **{k: v for k, v in pr.items() if k != "author"},
                )
                got = ci_main(["ci", "changed", "--repo", str(base), "--pr", str(pull.number)])
                return got == code, False

            results.append(run_attack(tag, attack, [base]))

        # 15.2: another team's row, with no teams table / as MEMBER / a top-level file
        pr_attack("no-teams-table", {"submissions/beta/hub.yaml": None}, None, 2)
        pr_attack(
            "member-edits-other-team",
            {"submissions/beta/hub.yaml": "x\n"},
            "-",
            1,
            author_association="MEMBER",
        )
        pr_attack("top-level-submissions-file", {"submissions/x.yaml": "x\n"}, "-", 1)
        # 15.3: a file nothing would measure
        pr_attack("unmeasured-data-file", {"submissions/alpha/notes/x.bin": "?"}, "-", 1)
        # 15.9: files hidden past the listing cap
        fake.max_listed_files = 2
        pr_attack(
            "past-the-listing-cap",
            {f"submissions/alpha/data/{i}.jsonl": "{}\n" for i in range(3)},
            "-",
            2,
        )
        fake.max_listed_files = 3000

        # 15.3: data-only and deletion-only PRs never go green unmeasured
        for tag, files in (
            ("data-only-change", {"submissions/alpha/data/eval.jsonl": "{}\n"}),
            ("weights-only-change", {"submissions/alpha/model/model.safetensors": "v2"}),
        ):
            job = step(tag)
            base = checkout(job)

            def measured(
                files: dict[str, str | None] = files, base: Path = base
            ) -> tuple[bool, bool]:
                pull = fake.open_pull(BASE, FORK, files, author="alice")
                assert (
                    ci_main(["ci", "changed", "--repo", str(base), "--pr", str(pull.number)]) == 0
                )
                return read_outputs(Path(os.environ["GITHUB_OUTPUT"]))[
                    "ids"
                ] == '["alpha/local"]', False

            results.append(run_attack(tag, measured, [base]))

        # 15.3: a deletion reported as such, never "no submission changed"
        job = step("deletion-only")
        base = checkout(job)

        def deletion(base: Path = base, job: Path = job) -> tuple[bool, bool]:
            pull = fake.open_pull(
                BASE, FORK, {"submissions/alpha/local.yaml": None}, author="alice"
            )
            assert ci_main(["ci", "changed", "--repo", str(base), "--pr", str(pull.number)]) == 0
            plan = read_outputs(job / "output")
            argv = ["ci", "report", "--repo", str(base), "--artifacts", str(job)]
            argv += ["--output", str(job / "c.md"), "--matrix", plan["matrix"]]
            assert ci_main([*argv, "--removed", plan["removed"]]) == 0
            return read_outputs(job / "output")["description"] == "removes 1 submission(s)", False

        results.append(run_attack("deletion-only", deletion, [base]))

        # 15.1: a compromised publish runner's results tree
        job = step("forged-results")
        repo = merged_checkout(job / "repo")
        hostile_results(repo, job / "artifact")

        def forged() -> tuple[bool, bool]:
            code = ci_main(["ci", "results", "--repo", str(repo), "--from", str(job / "artifact")])
            start = fake.branch_sha(BASE)
            argv = ["ci", "publish", "--repo", str(repo), "--base-sha", start, "--files"]
            code2 = ci_main([*argv, "README.md", "results"])
            tree = fake.trees[fake.commits[fake.branch_sha(BASE)]["tree"]]
            extra = sorted(p for p in tree if p.startswith("results/")) != [
                "results/ml_masters/int8.json"
            ]
            return code == code2 == 0, extra

        results.append(run_attack("forged-publish-results", forged, []))

    # 15.4: commands in untrusted text
    def injected() -> tuple[bool, bool]:
        out = io.StringIO()
        guard = LogGuard(out)
        guard.write("metric '##[add-mask]x'\n::stop-commands::t\n::set-output name=a::b\n")
        guard.flush()
        lines = [*out.getvalue().splitlines(), log_safe("x\n::add-mask::y")]
        leaked = [line for line in lines if line.startswith("::") or "##[" in line]
        return not leaked, bool(leaked)

    results.append(run_attack("log-workflow-commands", injected, []))

    # 15.8: a dataset larger than the cap
    def huge_dataset() -> tuple[bool, bool]:
        files = DatasetFiles(sizes={"t.parquet": 10**12}, split_files=["t.parquet"])

        class Hub:
            def files(self, spec: DatasetSpec) -> DatasetFiles:
                return files

        try:
            check_dataset_download(DatasetSpec(path="org/huge"), 20 * 10**9, Hub())
        except DatasetTooLargeError:
            return True, False
        return False, False

    results.append(run_attack("dataset-over-the-cap", huge_dataset, []))

    # 15.10: a shared cache between jobs is named
    def shared_cache() -> tuple[bool, bool]:
        problems = cache_problems({"RUNNER_TEMP": str(tmp_path), "HF_HOME": "/home/r/.cache"})
        return len(problems) == 4, False

    results.append(run_attack("shared-runner-cache", shared_cache, []))
    return results


def corpus_base_files() -> dict[str, str]:
    from test_ci_ownership import BASE_FILES

    return dict(BASE_FILES)


def test_every_attack_is_refused_without_traceback_or_side_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    results = corpus_results(tmp_path, capsys)
    first_release = len(results)
    results += issue15_results(tmp_path, monkeypatch)
    tried = len(results)
    refused = sum(r.refused for r in results)
    tracebacks = sum(r.traceback for r in results)
    effects = sum(r.side_effect for r in results)
    added = sum(c.name in ISSUE15_CASES for c in corpus.CASES)
    line = (
        f"attacks: {tried} tried ({first_release} static corpus cases, {added} of them added "
        f"for issue 15; {tried - first_release} workflow attacks of issue 15), {refused} "
        f"refused, {tracebacks} tracebacks, {effects} side effects"
    )
    with capsys.disabled():
        print("\n" + line)
    bad = [r for r in results if not r.refused or r.traceback or r.side_effect]
    assert bad == [], line
    assert added == len(ISSUE15_CASES) and first_release == len(corpus.CASES)
    assert tried - first_release >= 12
