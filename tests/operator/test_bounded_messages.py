"""Every message the operator writes (the CR's message and conditions, the Event, the
row's error) is cut at 1 KiB with an ellipsis, however long the trainer's error, the
kubelet's message or the API server's answer is."""

from __future__ import annotations

from tjcore.messages import MESSAGE_LIMIT
from tjoperator.status import Observation, Phase, Verdict, build_status, judge
from tjoperator.tracking import row_values
from tjtrainer.progress import RunProgress, RunState

HUGE = "Traceback line that goes on and on; " * 2000  # ~70 KB


def _fits(text: str | None) -> bool:
    return text is not None and len(text.encode()) <= MESSAGE_LIMIT and text.endswith("…")


def test_a_huge_trainer_error_is_bounded_everywhere_it_is_written() -> None:
    progress = RunProgress(
        timeframe="15m", n_trials=1, total_trials=2, state=RunState.FAILED, error=HUGE
    )
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}
    obs = Observation(progress, failed, trainer_message=HUGE)
    verdict = judge(obs)
    assert verdict.phase == Phase.FAILED and _fits(verdict.message)
    status = build_status(obs, verdict, total_trials=2, previous={}, generation=1)
    assert _fits(status["message"])
    assert all(len(c["message"].encode()) <= MESSAGE_LIMIT for c in status["conditions"])
    assert _fits(row_values(obs, verdict)["error"])


def test_an_api_answer_of_any_length_is_bounded() -> None:
    verdict = Verdict(Phase.FAILED, "JobRefused", f"the API refused the trainer Job: {HUGE}")
    assert _fits(verdict.message) and verdict.message.startswith("the API refused")
    short = Verdict(Phase.RUNNING, "Training", "trial 3/20")
    assert short.message == "trial 3/20"
