"""Job folders used again (``dstack.runner.recycle``): whatever a job does to its folder, the
next job that gets it sees exactly its own tree, and the checkout never changes."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dstack.runner import recycle
from dstack.runner.code import CodeReport, give_back, place_code
from dstack.runner.removal import remove_tree
from tests.runner.test_code import Machine, listing, tree_of

FILES: dict[str, str | bytes] = {
    "train.py": "print('train')\n",
    "run.sh": "#!/bin/sh\necho hi\n",
    "lib/a.py": "a = 1\n",
    "lib/deep/b.py": "b = 2\n",
    "assets/labels.txt": "cat\ndog\n",
}


def _rewrite_same_size_old_mtime(job: Path) -> None:
    path = job / "train.py"
    before = os.stat(path)
    path.write_text("print('TRAIN')\n")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime


def _hard_link_out(job: Path) -> None:
    os.link(job / "lib/a.py", job.parent / "outside-link")


def _replace_folder_with_link(job: Path) -> None:
    (job / "lib/deep/b.py").unlink()
    (job / "lib/deep").rmdir()
    os.symlink("/etc", job / "lib/deep")


def _unreadable_extra_folder(job: Path) -> None:
    (job / "outputs/run1").mkdir(parents=True)
    (job / "outputs/run1/model.bin").write_bytes(b"\0" * 1000)
    os.chmod(job / "outputs/run1", 0o000)
    os.chmod(job / "outputs", 0o500)


def _unwritable_tree_folder(job: Path) -> None:
    (job / "lib/new.py").write_text("new")
    os.chmod(job / "lib", 0o500)


def _file_replaced_by_folder(job: Path) -> None:
    (job / "run.sh").unlink()
    (job / "run.sh").mkdir()
    (job / "run.sh/inner").write_text("x")


JOBS: dict[str, Callable[[Path], None]] = {
    "rewrites a file in place": lambda j: (j / "lib/a.py").write_text("a = 'changed'\n"),
    "rewrites a file keeping its size and mtime": _rewrite_same_size_old_mtime,
    "appends to a file": lambda j: (j / "assets/labels.txt").open("a").write("bird\n"),
    "deletes a file": lambda j: (j / "lib/deep/b.py").unlink(),
    "deletes a folder": lambda j: [(j / "lib/deep/b.py").unlink(), (j / "lib/deep").rmdir()],
    "makes a file executable": lambda j: os.chmod(j / "train.py", 0o755),
    "makes a folder private": lambda j: os.chmod(j / "lib", 0o700),
    "hard-links a file out of its folder": _hard_link_out,
    "turns a file into a symlink": lambda j: [
        (j / "train.py").unlink(),
        os.symlink("/etc/passwd", j / "train.py"),
    ],
    "turns a folder into a symlink": _replace_folder_with_link,
    "turns a file into a folder": _file_replaced_by_folder,
    "writes outputs in new folders, one unreadable": _unreadable_extra_folder,
    "adds a file in a folder it then makes read-only": _unwritable_tree_folder,
    "leaves a fifo": lambda j: os.mkfifo(j / "pipe"),
    "renames files": lambda j: [
        os.rename(j / "lib/a.py", j / "lib/c.py"),
        os.rename(j / "train.py", j / "lib/a.py"),
    ],
}


@pytest.mark.parametrize("what", list(JOBS))
def test_the_next_job_sees_exactly_its_tree_whatever_the_last_one_did(
    tmp_path: Path, what: str
) -> None:
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    checkout = tmp_path / "cache" / "code" / "checkouts"
    first_folder = tmp_path / "w1" / "repo"
    first = place_code(m.storage, spec, first_folder, m.cache)
    pristine = {p: listing(p) for p in checkout.glob("*/*/tree")}
    JOBS[what](first_folder)
    kept = give_back(first, first_folder)
    second_folder = tmp_path / "w2" / "repo"
    second = place_code(m.storage, spec, second_folder, m.cache)
    assert listing(second_folder) == tree_of(m.root)
    assert os.stat(second_folder / "lib/a.py").st_nlink == 1
    assert {p: listing(p) for p in checkout.glob("*/*/tree")} == pristine
    if kept:
        assert "spare" in second.phases
    else:  # could not be cleaned as this user: removed, and the next job gets a copy
        assert "copy" in second.phases


# The runner kills the job's process group; these left it (their own session). Each says
# when it holds the folder (READY), waits to be told (GO), writes, and says so (DONE).
_SIGNALS = "READY GO DONE"
LEFT_RUNNING = {
    "working in the folder": (
        ["sh", "-c", 'touch "$1"; while [ ! -e "$2" ]; do sleep 0.01; done; '
         'echo late >> train.py; touch "$3"; sleep 30', "sh"], "."),
    "holding a file open": (
        [sys.executable, "-c", "import os, sys, time; f = open(sys.argv[1], 'a'); "
         "open(sys.argv[2], 'w').close()\n"
         "while not os.path.exists(sys.argv[3]): time.sleep(0.01)\n"
         "f.write('late'); f.flush(); open(sys.argv[4], 'w').close(); time.sleep(30)",
         "lib/a.py"], ".."),
}  # fmt: skip


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {path.name}"
        time.sleep(0.01)


@pytest.mark.parametrize("how", list(LEFT_RUNNING))
def test_a_folder_a_process_still_uses_is_never_used_again(tmp_path: Path, how: str) -> None:
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, spec, folder, m.cache)
    argv, cwd = LEFT_RUNNING[how]
    if cwd == "..":
        argv = [*argv[:-1], str(folder / argv[-1])]
    ready, go, done = (tmp_path / name for name in _SIGNALS.split())
    process = subprocess.Popen(
        [*argv, str(ready), str(go), str(done)], cwd=folder / cwd, start_new_session=True
    )
    try:
        _wait_for_file(ready)  # its working folder or its open file is there
        if recycle.in_use(folder) is None:
            pytest.skip("no /proc on this system: job folders are never used again here")
        assert not give_back(report, folder)
        shutil.rmtree(folder.parent)  # what the runner does with a folder not kept
        again = tmp_path / "w2" / "repo"
        assert "copy" in place_code(m.storage, spec, again, m.cache).phases
        go.touch()
        _wait_for_file(done)  # the process has written into its (removed) folder
        assert listing(again) == tree_of(m.root)
    finally:
        process.kill()
        process.wait()


def test_where_processes_cannot_be_seen_no_folder_is_used_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "in_use", lambda folder: None)  # as on a system without /proc
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    assert not give_back(place_code(m.storage, m.submit(), folder, m.cache), folder)


def test_a_spare_without_its_record_is_never_used(tmp_path: Path) -> None:
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    folder = tmp_path / "w1" / "repo"
    assert give_back(place_code(m.storage, spec, folder, m.cache), folder)
    base = next((m.cache / "code" / "checkouts").glob("*/*"))
    (base / "spare.json").unlink()  # a runner killed between the rename and the record
    (base / recycle.SPARE / "train.py").write_text("unchecked")
    report = place_code(m.storage, spec, tmp_path / "w2" / "repo", m.cache)
    assert "copy" in report.phases and not (base / recycle.SPARE).exists()
    assert listing(tmp_path / "w2" / "repo") == tree_of(m.root)


def test_the_spare_follows_the_tree_the_checkout_moved_to(tmp_path: Path) -> None:
    """Job A (tree 1) ends after job B moved the checkout to tree 2: A's folder is brought to
    tree 2 when kept, and a job of tree 1 later gets tree 1 exactly."""
    m = Machine(tmp_path, FILES)
    spec_1 = m.submit()
    a = place_code(m.storage, spec_1, tmp_path / "a" / "repo", m.cache)
    (m.root / "lib/a.py").write_text("a = 'two'\n")
    (m.root / "new.py").write_text("new")
    spec_2 = m.submit()
    b = place_code(m.storage, spec_2, tmp_path / "b" / "repo", m.cache)
    assert give_back(a, tmp_path / "a" / "repo")
    c = place_code(m.storage, spec_2, tmp_path / "c" / "repo", m.cache)
    assert "spare" in c.phases
    assert listing(tmp_path / "c" / "repo") == tree_of(m.root)
    assert give_back(b, tmp_path / "b" / "repo")
    assert not give_back(c, tmp_path / "c" / "repo")  # one spare at most: c is removed
    d = place_code(m.storage, spec_1, tmp_path / "d" / "repo", m.cache)
    assert "spare" in d.phases
    assert (tmp_path / "d" / "repo" / "lib/a.py").read_text() == "a = 1\n"
    assert not (tmp_path / "d" / "repo" / "new.py").exists()


def test_nothing_is_given_back_for_an_archive_or_a_missing_folder(tmp_path: Path) -> None:
    assert not give_back(CodeReport(), tmp_path / "nothing")
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    folder.rename(tmp_path / "moved")  # the job moved its own folder away
    assert not give_back(report, folder)


def test_a_spare_outliving_its_checkout_is_compared_with_the_new_one(tmp_path: Path) -> None:
    """The checkout was left incomplete (a runner killed mid-update) and is rebuilt: the spare
    no longer follows it, so its record is compared with the tree path by path."""
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    folder = tmp_path / "w1" / "repo"
    assert give_back(place_code(m.storage, spec, folder, m.cache), folder)
    base = next((m.cache / "code" / "checkouts").glob("*/*"))
    (base / "state.json").write_text('{"digest": null, "files": 0, "size": 0}')
    (m.root / "lib/a.py").write_text("a = 'new'\n")
    again = tmp_path / "w2" / "repo"
    report = place_code(m.storage, m.submit(), again, m.cache)
    assert "spare" in report.phases
    assert listing(again) == tree_of(m.root)


def test_nothing_of_the_record_is_within_a_jobs_reach(tmp_path: Path) -> None:
    """The record a folder is checked against when it is given back is held open by the runner,
    with no name left on disk: a job cannot rewrite it to have a changed file kept."""
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    first = tmp_path / "w1" / "repo"
    assert give_back(place_code(m.storage, spec, first, m.cache), first)
    second = tmp_path / "w2" / "repo"
    report = place_code(m.storage, spec, second, m.cache)
    assert "spare" in report.phases
    base = next((m.cache / "code" / "checkouts").glob("*/*"))
    assert sorted(p.name for p in second.parent.iterdir()) == ["repo"]
    assert not (base / "spare.json").exists()
    (second / "train.py").write_text("print('EVIL')\n")
    assert give_back(report, second)
    third = tmp_path / "w3" / "repo"
    place_code(m.storage, spec, third, m.cache)
    assert listing(third) == tree_of(m.root)


def test_a_record_naming_a_path_outside_the_folder_is_refused(tmp_path: Path) -> None:
    m = Machine(tmp_path, FILES)
    spec = m.submit()
    first = tmp_path / "w1" / "repo"
    assert give_back(place_code(m.storage, spec, first, m.cache), first)
    base = next((m.cache / "code" / "checkouts").glob("*/*"))
    head, rows = (base / "spare.json").read_text().split("\n", 1)
    forged = rows.replace('"lib/a.py"', '"../../../outside.py"')
    (base / "spare.json").write_text(f"{head}\n{forged}")
    (m.root / "lib/a.py").write_text("a = 'two'\n")  # the spare must be compared: record read
    (m.root / "new.py").write_text("n")
    folder = tmp_path / "w2" / "repo"
    (base / "state.json").write_text('{"digest": null, "files": 0, "size": 0}')
    report = place_code(m.storage, m.submit(), folder, m.cache)
    assert "copy" in report.phases  # the spare was not used
    assert listing(folder) == tree_of(m.root)
    assert not list(tmp_path.rglob("outside.py"))


def test_a_folder_reached_through_a_symlink_is_still_seen_in_use(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "home")  # DSTACK_HOME through a symlink
    m = Machine(tmp_path / "home", FILES)
    folder = tmp_path / "home" / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    process = subprocess.Popen(["sleep", "30"], cwd=folder, start_new_session=True)
    try:
        time.sleep(0.2)
        if recycle.in_use(folder) is None:
            pytest.skip("no /proc on this system")
        assert not give_back(report, folder)
    finally:
        process.kill()
        process.wait()


ZOMBIE_LEADER = """
import ctypes, os, platform, sys, threading, time
os.chdir(sys.argv[1])
threading.Thread(target=lambda: (time.sleep(1), open("late.txt", "w").write("x"),
                                 time.sleep(30))).start()
number = {"x86_64": 60, "aarch64": 93}[platform.machine()]
ctypes.CDLL(None).syscall(number, 0)  # the main thread ends; the process lives on
"""


def test_a_process_whose_main_thread_ended_is_still_seen(tmp_path: Path) -> None:
    if platform.machine() not in ("x86_64", "aarch64") or not os.path.isdir("/proc/self/task"):
        pytest.skip("the exit system call is called by number on x86_64 and aarch64 Linux")
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    process = subprocess.Popen([sys.executable, "-c", ZOMBIE_LEADER, str(folder)],
                               start_new_session=True)  # fmt: skip
    try:
        time.sleep(0.5)
        assert recycle.in_use(folder)
        assert not give_back(report, folder)
    finally:
        process.kill()
        process.wait()


def test_a_folder_with_extended_attributes_is_not_used_again(tmp_path: Path) -> None:
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    try:
        os.setxattr(folder / "lib", "user.note", b"set by the job")
    except (AttributeError, OSError):
        pytest.skip("no user extended attributes on this filesystem")
    assert not give_back(report, folder)


def test_folders_nested_deeper_than_python_recurses_are_removed(tmp_path: Path) -> None:
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    deep = folder / "outputs"
    deep.mkdir()
    os.chdir(deep)
    try:
        for _ in range(1500):  # one level at a time: the whole path is longer than PATH_MAX
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(tmp_path)
    try:
        assert give_back(report, folder)
        again = tmp_path / "w2" / "repo"
        assert "spare" in place_code(m.storage, m.submit(), again, m.cache).phases
        assert listing(again) == tree_of(m.root)
    finally:  # deep folders left by a failure would break pytest's own (recursive) clean-up
        remove_tree(tmp_path / "w1")


def test_a_folder_with_a_filesystem_mounted_inside_is_not_used_again(tmp_path: Path) -> None:
    """A job running as root bind-mounted a dataset over a folder of its tree and left it."""
    m = Machine(tmp_path, FILES)
    folder = tmp_path / "w1" / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "precious.bin").write_bytes(b"\0" * 10)
    mounted = subprocess.run(["mount", "--bind", str(dataset), str(folder / "lib/deep")],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root and mount rights)")
    try:
        assert not give_back(report, folder)
        assert (dataset / "precious.bin").exists()
    finally:
        subprocess.run(["umount", str(folder / "lib/deep")], check=True)


def test_a_job_waits_for_a_folder_being_given_back_rather_than_copy(tmp_path: Path) -> None:
    """Back-to-back runs: the next job can ask for the code while the last one is still
    checking its folder; it waits for that folder (a rename) instead of copying every file."""
    from dstack.runner import checkout_locks

    m = Machine(tmp_path, FILES)
    spec = m.submit()
    first = tmp_path / "w1" / "repo"
    report = place_code(m.storage, spec, first, m.cache)
    assert report.checkout is not None
    kept: list[bool] = []

    def give_back_slowly() -> None:
        with checkout_locks.giving_back(report.checkout):  # type: ignore[arg-type]
            started.set()
            time.sleep(0.5)  # checking a big folder
            kept.append(give_back(report, first))

    started = threading.Event()
    returner = threading.Thread(target=give_back_slowly)
    returner.start()
    started.wait()
    second = place_code(m.storage, spec, tmp_path / "w2" / "repo", m.cache)
    returner.join()
    assert kept == [True]
    assert "spare" in second.phases and second.phases["wait"] >= 0.3
    assert listing(tmp_path / "w2" / "repo") == tree_of(m.root)


@pytest.mark.parametrize("how", ["symlink", "moved"])
def test_a_folder_swapped_under_its_path_is_not_touched(tmp_path: Path, how: str) -> None:
    """The job moved its folder (or the one above it) away and put a symlink to someone's
    folder in its place: give-back must not clean, fill or keep that folder."""
    m = Machine(tmp_path, FILES)
    job = tmp_path / "w1"
    folder = job / "repo"
    report = place_code(m.storage, m.submit(), folder, m.cache)
    victim = tmp_path / "victim"
    (victim / "repo").mkdir(parents=True)
    (victim / "repo" / "precious.txt").write_text("mine")
    (victim / "repo" / "train.py").write_text("not the snapshot's")
    job.rename(tmp_path / "w1.moved")
    if how == "symlink":
        os.symlink(victim, job)
    else:  # a folder of the same name, made anew: not the one handed out
        shutil.copytree(victim, job)
        victim = job
    assert not give_back(report, folder)
    assert (victim / "repo" / "precious.txt").read_text() == "mine"
    assert (victim / "repo" / "train.py").read_text() == "not the snapshot's"


def test_the_runner_keeps_its_open_files_from_its_jobs() -> None:
    """A job runs as the runner's user; the runner is made non-dumpable so that the job cannot
    open the runner's files through /proc/<pid>/fd (nor ptrace it for its secrets)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("non-dumpable processes are a Linux feature")
    script = (
        "import ctypes; from dstack.processes import keep_out_of_reach; "
        "assert keep_out_of_reach(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"  # PR_GET_DUMPABLE
