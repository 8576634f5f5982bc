from rpi_braze_sync.heldrows import HeldChunks


def test_a_chunk_is_let_go_once_the_checkpoint_passes_its_last_row() -> None:
    held = HeldChunks()
    held.take(10, 100)  # rows 0..9
    held.take(20, 50)  # rows 10..19
    assert held.release_to(0) == 150
    assert held.release_to(9) == 150  # row 9 not yet checkpointed
    assert held.release_to(10) == 50
    assert held.release_to(15) == 50  # part of a chunk settled: still held (a bound)
    assert held.release_to(20) == 0
    assert held.bytes == 0
