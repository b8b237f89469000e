"""`node join`'s own process handling: leaving when the task is over, --stay, plain logs, the node's Flower home."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fedledger.client.join import SuperNode, serve


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_node_leaves_when_the_task_is_over(tmp_path: Path) -> None:
    node = SuperNode(python("import time; time.sleep(60)"), tmp_path / "node.log")
    answers = iter([None, None, *["task 0xabc has played all its 3 rounds: nothing left to serve"] * 100])
    said: list[str] = []
    started = time.monotonic()
    assert serve(node, lambda: next(answers), said.append, poll=0.1, grace=1.0) == 0
    assert 1.0 <= time.monotonic() - started < 10  # after the grace the coordinator's last messages need
    assert node.process.poll() is not None  # the SuperNode was stopped
    assert said == ["task 0xabc has played all its 3 rounds: nothing left to serve; leaving"]


def test_with_stay_a_node_says_once_what_it_waits_for_and_runs_on(tmp_path: Path) -> None:
    node = SuperNode(python("import time; time.sleep(1.5); raise SystemExit(3)"), tmp_path / "node.log")
    said: list[str] = []
    code = serve(node, lambda: "task 0xabc is over", said.append, stay=True, waiting_for="a SuperLink at h:1", poll=0.1)
    assert code == 3  # it ran until the SuperNode itself exited
    assert len(said) == 1 and "staying as asked (--stay)" in said[0] and "a SuperLink at h:1" in said[0]
    node.stop()


def test_the_node_log_has_no_colour_codes_and_flower_lives_in_the_nodes_folder(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    home = tmp_path / ".fedledger" / "nodes" / "0xabc" / "flwr"
    code = "import os; print('\\x1b[32mINFO\\x1b[0m :      hello'); print(os.environ['FLWR_HOME'])"
    node = SuperNode(python(code), log, flwr_home=home)
    assert node.wait(timeout=30) == 0
    node.stop()
    text = log.read_text()
    assert "\x1b" not in text and "INFO :      hello" in text
    assert text.splitlines()[-1] == str(home.resolve()) and home.is_dir()
