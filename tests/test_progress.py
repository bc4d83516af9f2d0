"""Progress lines: visible from the start, throttled in logs, silent when disabled."""

from nnwatch._progress import Progress


def test_log_shows_the_start_and_the_first_unit_at_once(capsys):
    bar = Progress(100, "head search")
    start = capsys.readouterr().err.splitlines()
    assert len(start) == 1 and "0/100" in start[0] and "starting" in start[0]
    bar.update(1)
    first = capsys.readouterr().err.splitlines()
    assert len(first) == 1 and "1/100" in first[0]
    for _ in range(50):  # within 30 s: a log gets no more lines (no redraws)
        bar.update(1)
    assert capsys.readouterr().err == ""
    bar.close()
    assert "51/100" in capsys.readouterr().err


def test_disabled_prints_nothing(capsys):
    bar = Progress(3, "quiet", enabled=False)
    bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""
