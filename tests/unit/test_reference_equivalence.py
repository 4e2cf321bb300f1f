"""ausweep.models.reference_equivalence: the stand-ins are faithful and leave nothing behind, the
record says which packages were real, and the wrapper reports differences against a tolerance.

The PaSST and PANN checks themselves run in tests/unit/test_passt.py and test_pann.py, AudioMAE's
and LAION-CLAP's comparisons in test_audiomae.py and test_laion_clap.py (the same functions).
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from ausweep.models import reference_equivalence as eq


def _stand_ins_loaded() -> list[str]:
    return [n for n, m in sys.modules.items() if isinstance(m, eq._StandIn)]


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa is not installed")
def test_librosa_stand_in_equals_librosa_where_torchlibrosa_calls_it():
    """The three functions torchlibrosa calls when CNN14 and HTSAT are built (a GPU machine cannot
    carry librosa), at PANN's and LAION-CLAP's settings."""
    import librosa

    mods = eq._librosa_stand_in()
    for sr in (32000, 48000):
        want = librosa.filters.mel(sr=sr, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
        got = mods["librosa.filters"].mel(sr=sr, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
        assert got.shape == want.shape == (64, 513) and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(mods["librosa.filters"].mel(sr=16000, n_fft=512), librosa.filters.mel(sr=16000, n_fft=512),
                               rtol=1e-5, atol=1e-9)  # fmax None: Nyquist
    for n in (1024, 800, 7):
        np.testing.assert_array_equal(mods["librosa.filters"].get_window("hann", n, fftbins=True),
                                      librosa.filters.get_window("hann", n, fftbins=True))
        w = librosa.filters.get_window("hann", n, fftbins=True)
        np.testing.assert_array_equal(mods["librosa.util"].pad_center(w, size=1031), librosa.util.pad_center(w, size=1031))
    with pytest.raises(ValueError):
        eq.librosa_pad_center(np.ones(5), size=3)


def test_stand_ins_are_recorded_and_forgotten_afterwards(monkeypatch):
    """A package that does not import is stood in for and named; afterwards no stand-in is left
    and the finder is gone; a package that imports is recorded as real with its version."""
    real_try = eq._try_import
    monkeypatch.setattr(eq, "_try_import", lambda name: "forced by the test" if name in ("librosa", "torchvision")
                        else real_try(name))
    with eq.stand_ins("librosa", "torchvision", "numpy", always={"x": "why"}) as record:
        import librosa  # the stand-in

        assert librosa.filters.mel(sr=32000, n_fft=64, n_mels=4).shape == (4, 33)
        import torchvision.ops.misc as misc

        with pytest.raises(RuntimeError, match="stand-in"):
            misc.FrozenBatchNorm2d(3)
    assert record.packages["librosa"] == "stand-in (forced by the test)" and "filters.mel" in record.stand_ins["librosa"]
    assert record.packages["torchvision"].startswith("stand-in") and record.stand_ins["x"] == "why"
    assert record.packages["numpy"] == f"real {np.__version__}"
    assert _stand_ins_loaded() == [] and not any(isinstance(f, eq._TorchvisionFinder) for f in sys.meta_path)
    assert not isinstance(sys.modules.get("librosa"), eq._StandIn)


def test_a_package_without_stand_in_or_install_is_unavailable():
    with pytest.raises(eq.Unavailable, match="no_such_package_here does not import"):
        with eq.stand_ins("no_such_package_here"):
            pass
    record = eq.StandIns()
    with pytest.raises(eq.Unavailable, match="not installed"):
        eq._reference_package("no_such_package_here", record)
    with pytest.raises(ValueError, match="unknown reference check 'nope'"):
        eq.reference_equivalence("nope")
    assert _stand_ins_loaded() == []


def test_result_compares_against_a_scaled_tolerance():
    record = eq.StandIns()
    record.packages["p"] = "real 1"
    small = eq._result(record, {"a": 5e-5, "b": 1e-6}, scale=0.5, size="s")
    assert small["ok"] and small["max_diff"] == 5e-5 and small["tolerance"] == eq.TOLERANCE and small["real"] == ["p"]
    assert not eq._result(record, {"a": 2e-4}, scale=1.0, size="s")["ok"]
    assert eq._result(record, {"a": 2e-4}, scale=3.0, size="s")["ok"]  # outputs of 3: 3e-4 allowed
    assert not eq._result(record, {"a": 0.0}, scale=1.0, size="s", checks={"every_key_consumed": False})["ok"]


def test_audiomae_check_through_the_wrapper():
    """The GPU script's row for AudioMAE: both files, every difference named, torchvision recorded."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (pip install --no-deps timm)")
    res = eq.reference_equivalence("audiomae", tiny=True)
    assert res["ok"] and res["max_diff"] < 1e-4 and res["scale"] > 0.3, res
    assert {"pretrained_tokens", "pretrained_pooled", "finetuned_pooled", "finetuned_logits"} <= set(res["diffs"])
    assert res["packages"]["timm"].startswith("real") and "torchvision" in res["packages"]
    assert res["device"] == "cpu" and res["seconds"] > 0
    assert _stand_ins_loaded() == []


def test_pann_check_as_on_the_gpu_machine(monkeypatch):
    """The GPU machine cannot carry librosa (numba, llvmlite) and has no matplotlib: the CNN14 check
    runs there with both stood in for, and gives the same embeddings as the reference here."""
    for mod in ("panns_inference", "torchlibrosa"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")
    for name in [n for n in sys.modules if n.split(".")[0] in ("librosa", "matplotlib")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    real_try = eq._try_import
    monkeypatch.setattr(eq, "_try_import", lambda name: "forced: not carried" if name in ("librosa", "matplotlib")
                        else real_try(name))
    res = eq.reference_equivalence("pann", tiny=True)
    assert res["ok"] and res["max_diff"] < 1e-4 and res["scale"] > 0.3, res
    assert set(res["stand_ins"]) == {"librosa", "matplotlib", "panns_inference label CSV"}
    assert res["real"] == ["panns_inference", "torchlibrosa"]
    assert _stand_ins_loaded() == [] and "torchlibrosa" not in sys.modules
