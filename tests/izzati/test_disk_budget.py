"""The upload disk budget shared by all in-flight uploads, in memory."""

from twistbridge.izzati._files import SPOOL_FILE, DiskBudget, UploadStore


def test_budget_take_and_give():
    budget = DiskBudget(100)
    assert budget.take(60) and budget.left == 40
    assert not budget.take(41) and budget.used == 60
    budget.give(60)
    assert budget.left == 100


def test_a_store_charges_past_its_reservation_and_gives_all_back(tmp_path):
    budget = DiskBudget(SPOOL_FILE * 4)
    store = UploadStore(str(tmp_path), budget)
    assert store.reserve(SPOOL_FILE)
    _, sink = store.open_file("a", "application/octet-stream")
    sink.write(b"x" * SPOOL_FILE)  # still in memory
    assert budget.used == SPOOL_FILE and store.on_disk == 0
    sink.write(b"x" * SPOOL_FILE)  # spilled to disk: 2 * SPOOL_FILE there
    assert store.on_disk == 2 * SPOOL_FILE and budget.used == 2 * SPOOL_FILE
    other = UploadStore(str(tmp_path), budget)
    assert other.reserve(SPOOL_FILE) and not other.reserve(SPOOL_FILE + 1)
    sink.write(b"x" * SPOOL_FILE)
    assert store.full is None and budget.used == 4 * SPOOL_FILE
    sink.write(b"x")  # over: nothing written, the store says why
    assert store.full.startswith("no room for this upload: uploads in progress hold ")
    assert store.on_disk == 3 * SPOOL_FILE and budget.used == 4 * SPOOL_FILE
    store.close()
    assert budget.used == SPOOL_FILE
    store.close()
    other.release()
    assert budget.used == 0
