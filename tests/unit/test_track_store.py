"""SweepTracker against a real SQLite MLflow store: artifacts round-trip byte for byte."""

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
