"""The sweep trainable's loop over a study's results: every result reported in order, its artifacts
written to the sweep's storage, and the study's generator closed (its ``finally`` run, freeing what
it loaded) however the loop ends: at the end, on an error, and when Tune stops the trial, which it
does by raising SystemExit out of ``tune.report`` (ray.train's session calls ``sys.exit(0)``)."""

import pytest

from ausweep.sweep.runner import _report_results
from ausweep.track.tune_callback import ARTIFACT_DIR


class Study:
    """A study's ``trial`` generator that records how far it got and whether its cleanup ran."""

    def __init__(self, n=3):
        self.n, self.yielded, self.cleaned_up = n, 0, False

    def trial(self):
        try:
            for i in range(self.n):
                self.yielded += 1
                yield {"step": i, "acc": i / 10, **({"artifacts": {"per_class.csv": f"a,{i}\n"}} if i == 0 else {})}
        finally:
            self.cleaned_up = True


def test_all_results_are_reported_with_their_artifacts_and_the_generator_finishes(tmp_path):
    study, reported = Study(), []
    _report_results(study.trial(), reported.append, tmp_path / "trial_1")
    assert [r["step"] for r in reported] == [0, 1, 2] and study.cleaned_up
    assert "artifacts" not in reported[0] and ARTIFACT_DIR not in reported[1]
    assert (tmp_path / "trial_1" / "result_00000" / "per_class.csv").read_text() == "a,0\n"
    assert reported[0][ARTIFACT_DIR] == str(tmp_path / "trial_1" / "result_00000")


@pytest.mark.parametrize("stop", [SystemExit(0), RuntimeError("MLflow down")], ids=["tune_stops", "report_fails"])
def test_a_trial_stopped_or_failing_at_report_closes_the_study_at_once(tmp_path, stop):
    study, reported = Study(), []

    def report(result):
        reported.append(result)
        if len(reported) == 2:
            raise stop

    with pytest.raises(type(stop)) as raised:
        _report_results(study.trial(), report, tmp_path)
    # The traceback (held here, as by Ray's runner thread) keeps the loop's frame and so the
    # generator alive: only an explicit close runs its cleanup now rather than at garbage collection.
    assert raised.traceback and study.yielded == 2 and study.cleaned_up


def test_a_plain_iterator_of_results_is_reported_too(tmp_path):
    reported = []
    _report_results([{"acc": 0.5}], reported.append, tmp_path)
    assert reported == [{"acc": 0.5}]
