"""SweepTracker against a real SQLite MLflow store: artifacts round-trip byte for byte; every key is
sanitised, and names come back from keys exactly (ausweep.track.keys)."""

from ausweep.track.store import SweepTracker


def test_text_and_binary_artifacts_round_trip(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    t = SweepTracker("exp", uri=uri)
    run = t.start_parent("p", {"a": 1}, {})
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    t.log_bytes(run, png, "plots/heat.png")
    t.log_bytes(run, b"top", "top.bin")
    t.log_text(run, "x,y\n1,2\n", "tables/t.csv")
    client = MlflowClient(tracking_uri=uri)
    assert open(client.download_artifacts(run, "plots/heat.png", str(tmp_path)), "rb").read() == png
    assert open(client.download_artifacts(run, "top.bin", str(tmp_path)), "rb").read() == b"top"
    assert open(client.download_artifacts(run, "tables/t.csv", str(tmp_path))).read() == "x,y\n1,2\n"


# ----------------------------------------------------------------------------- keys

HARD_NAMES = [
    "", "pitch", "acc_micro", "Sound & Music", "Sound/Music", "a/b/c", "/", "//", ".", "..", "...", "_", "__",
    "@", "acc@1", "_at_", "look_at_me", "_at", "at_", "_x26_", "_x5f_", "_x5f_x26_", "__x26__", "_x", "_x_",
    "_xg_", "_x1234567_", "_X26_", "x26_", "_x26", "&_x26_", "_&", "_@", "@_", "%26", "a:b", "tab\there",
    "new\nline", "naïve café", "音楽", "emoji 🎵", "\x00", "\U0010ffff", "\ud800", " ", "  lead", "trail  ",
    "_x10ffff_", "_x110000_",
]


def _random_names(n=2000, seed=0):
    import random

    rng = random.Random(seed)
    alphabet = "_x0123456789abcdefat@/.&: -"  # the characters the escapes are made of, densely
    for _ in range(n):
        k = rng.randint(0, 24)
        if rng.random() < 0.5:
            yield "".join(rng.choice(alphabet) for _ in range(k))
        else:
            yield "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0, 0x10FFFF)])) for _ in range(k))


def test_encode_name_round_trips_every_string_into_one_legal_level():
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

    from ausweep.track.keys import decode_name, encode_name

    for name in [*HARD_NAMES, *_random_names()]:
        enc = encode_name(name)
        assert decode_name(enc) == name, (name, enc)
        assert "/" not in enc and ":" not in enc and validate_param_and_metric_name(enc), (name, enc)
        if enc:
            assert not path_not_unique(f"acc/{enc}/n"), (name, enc)
    for name in ("pitch", "acc_micro", "Sound and Music", "naïve café", "a-b.c d", "x_1", "_at", "_x"):
        assert encode_name(name) == name  # legal names with nothing that reads as an escape stay as they are
    assert encode_name("Sound & Music") == "Sound _x26_ Music"
    assert encode_name("acc@1") == "acc_at_1"
    assert encode_name("a/b") == "a_x2f_b"


def test_keys_split_back_into_the_names_they_were_built_from():
    from ausweep.track.keys import join_key, mlflow_key, split_key

    names = [*HARD_NAMES, *_random_names(500, seed=1)]
    for cat, sub in zip(names, reversed(names)):
        key = join_key("acc", cat, sub)
        assert split_key(key) == ("acc", cat, sub)
        assert mlflow_key(key) == key  # the writer leaves a built key alone: no double escaping
    # keys written by code: unchanged when legal, "@" as it always was
    for k in ("acc/sound/pitch", "acc_at_1", "ausweep.trial_key", "mlflow.parentRunId", "retrieval/x/label_match_at_1"):
        assert mlflow_key(k) == k
    assert mlflow_key("val/acc@1") == "val/acc_at_1" and mlflow_key("test/perm_acc@1") == "test/perm_acc_at_1"
    assert split_key(mlflow_key("test/acc@1_se")) == ("test", "acc@1_se")
    assert split_key(mlflow_key("chance/Sound & Music")) == ("chance", "Sound & Music")


def test_every_key_the_tracker_writes_is_sanitised(tmp_path):
    from mlflow.tracking import MlflowClient

    from ausweep.track.keys import join_key, split_key

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    t = SweepTracker("exp", uri=uri)
    parent = t.start_parent("p", {"text_filter.Sound & Music": 1}, {"ausweep.note@1": "x"})
    run = t.child_for_trial("k", "t", {"sets": "a", "weights.Sound & Music": 2.0}, {"ausweep.by: whom?": "me"})
    cat = "Sound & Music/Ambience"  # a "/" inside a category name
    t.log_metrics(run, {join_key("acc", cat, "pitch"): 0.5, "val/acc@1": 0.25, "acc&micro": 0.125})
    t.log_series(run, "train/loss (nats)", [3.0, 2.0])
    t.set_tags(run, {"ausweep.data%digest": "abc"})
    client = MlflowClient(tracking_uri=uri)
    data = client.get_run(run).data
    metrics = {split_key(k): v for k, v in data.metrics.items()}
    assert metrics[("acc", cat, "pitch")] == 0.5
    assert metrics[("val", "acc@1")] == 0.25 and "val/acc_at_1" in data.metrics
    assert metrics[("acc&micro",)] == 0.125
    assert [m.value for m in client.get_metric_history(run, "train/loss _x28_nats_x29_")] == [3.0, 2.0]
    assert {split_key(k) for k in data.params} >= {("weights.Sound & Music",), ("sets",)}
    assert {split_key(k) for k in data.tags} >= {("ausweep.by: whom?",), ("ausweep.data%digest",)}
    assert ("text_filter.Sound & Music",) in {split_key(k) for k in client.get_run(parent).data.params}
    assert ("ausweep.note@1",) in {split_key(k) for k in client.get_run(parent).data.tags}


# ----------------------------------------------------------------------------- what the MLflow 3 UI shows


def test_experiments_open_on_the_runs_table_new_or_reused(tmp_path):
    """MLflow 3's UI opens an experiment without ``mlflow.experimentKind`` on its GenAI overview."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    new = SweepTracker("new", uri=uri).experiment_id
    assert client.get_experiment(new).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment("old")  # as ausweep made them before (and as the UI leaves them)
    inferred = client.create_experiment("inferred", tags={"mlflow.experimentKind": "genai_development_inferred"})
    chosen = client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    for name in ("old", "inferred", "chosen"):
        SweepTracker(name, uri=uri)
    kinds = {e: client.get_experiment(e).tags["mlflow.experimentKind"] for e in (old, inferred, chosen)}
    assert kinds == {old: "custom_model_development", inferred: "custom_model_development", chosen: "genai_development"}


def test_runs_carry_mlflow_source_tags(tmp_path):
    import subprocess
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    import ausweep

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    t = SweepTracker("exp", uri=uri)
    parent = t.start_parent("p", {}, {})
    child = t.child_for_trial("k", "t", {}, {})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(ausweep.__file__).parent, capture_output=True, text=True).stdout.strip()
    client = MlflowClient(tracking_uri=uri)
    for run in (parent, child):
        tags = client.get_run(run).data.tags
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
        if head:  # a checkout (an installed wheel has no commit to show)
            assert tags["mlflow.source.git.commit"] == head == tags["ausweep.git_sha"]


def test_source_name_of_a_module_run_with_dash_m(monkeypatch):
    from pathlib import Path

    import ausweep
    from ausweep.track.store import _source_name

    pkg = Path(ausweep.__file__).resolve().parent
    monkeypatch.setattr("sys.argv", [str(pkg / "sweep" / "__main__.py"), "probe"])
    assert _source_name() == "python -m ausweep.sweep"
    monkeypatch.setattr("sys.argv", ["/somewhere/train.py"])
    assert _source_name() == "/somewhere/train.py"


def _inputs(client, run):
    return sorted((i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source,
                   {t.key: t.value for t in i.tags}["mlflow.data.context"]) for i in client.get_run(run).inputs.dataset_inputs)


def test_reported_data_becomes_a_dataset_input_of_the_run(tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    t = SweepTracker("exp", uri=uri)
    parent = t.start_parent("p", {}, {})
    client = MlflowClient(tracking_uri=uri)
    # a digest reported by the trial; name, source and split from its config
    fsd = t.child_for_trial("a", "a", {"data.source": "fsd50k", "data.root": "/data/FSD50K", "data.split": "eval"}, {})
    t.set_tags(fsd, {"ausweep.data_digest": "0123456789abcdef", "ausweep.text_dim": 8})
    t.set_tags(fsd, {"ausweep.data_digest": "0123456789abcdef"})  # a retry reports it again: still one input
    assert _inputs(client, fsd) == [("fsd50k", "0123456789abcdef", "local", json.dumps({"uri": "/data/FSD50K"}), "eval")]
    assert client.get_run(fsd).data.tags["ausweep.data_digest"] == "0123456789abcdef"
    # a named set without a digest: the name stands for its content; an explicit split wins
    bench = t.child_for_trial("b", "b", {"data_root": None}, {})
    t.set_tags(bench, {"ausweep.data": "auditorybench/mcq", "ausweep.data_split": "test"})
    (name, digest, _, source, context), = _inputs(client, bench)
    assert (name, source, context) == ("auditorybench/mcq", json.dumps({"uri": "auditorybench/mcq"}), "test")
    assert len(digest) == 16 and int(digest, 16) >= 0
    other = t.child_for_trial("c", "c", {}, {})
    t.set_tags(other, {"ausweep.data": "auditorybench/mcq", "ausweep.data_split": "test"})
    assert _inputs(client, other) == _inputs(client, bench)  # same data, same digest
    # tags that say nothing about the data log no dataset
    plain = t.child_for_trial("d", "d", {}, {})
    t.set_tags(plain, {"ausweep.lm_kind": "causal"})
    assert _inputs(client, plain) == []
    # the parent's row (children collapse under it in the UI) lists every dataset its trials read
    assert {(n, d) for n, d, *_ in _inputs(client, parent)} == {("fsd50k", "0123456789abcdef"), ("auditorybench/mcq", digest)}


def test_ui_url_opens_the_experiment_on_its_runs():
    from ausweep.track.store import ui_url

    assert ui_url("http://127.0.0.1:5000/", "7") == "http://127.0.0.1:5000/#/experiments/7?workflowType=machine_learning"


def test_set_tags_batches_past_mlflows_limit_of_100_per_request(tmp_path):
    from mlflow.tracking import MlflowClient

    from ausweep.track.keys import split_key

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    t = SweepTracker("exp", uri=uri)
    run = t.start_parent("p", {}, {})
    tags = {f"ausweep.n_dropped.Sound & Music {i}": i for i in range(250)}
    t.set_tags(run, tags)
    stored = {split_key(k)[0]: v for k, v in MlflowClient(tracking_uri=uri).get_run(run).data.tags.items()}
    assert all(stored[k] == str(v) for k, v in tags.items())
