"""judge.cli.progress: a bar on a terminal, plain timed status lines on a pipe or a file."""

from __future__ import annotations

import io

from rich.console import Console

from judge.cli.progress import RunProgress, status_line


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plain() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_status_line_says_count_share_elapsed_and_time_left() -> None:
    assert status_line("judging", 120, 999, 2401, 17590) == \
        "judging: 120/999 (12%), 0:40:01 elapsed, about 4:53:10 left"
    assert status_line("ingesting", 5000, None, 61, unit="rules") == "ingesting: 5000 rules, 0:01:01 elapsed"


def test_off_a_terminal_a_line_every_interval_with_the_recent_rate_and_one_at_the_end() -> None:
    console, out = plain()
    clock = FakeClock()
    with RunProgress("judging", 100, console=console, every_s=60, clock=clock) as bar:
        bar.skip(40)  # a resumed run skips 40 done pairs: counted as done, not as speed
        clock.t += 30
        bar.advance()
        clock.t += 30
        bar.advance(2)  # 60 s: a line; 43 done, 57 left at 3 a minute
        clock.t += 120
        bar.advance()  # a line: 4 in 3 minutes, 56 left
        clock.t += 5
        bar.advance()
    lines = out.getvalue().splitlines()
    assert lines == ["judging: 43/100 (43%), 0:01:00 elapsed, about 0:19:00 left",
                     "judging: 44/100 (44%), 0:03:00 elapsed, about 0:42:00 left",
                     "judging: 45/100 (45%), 0:03:05 elapsed"]


def test_nothing_new_at_the_end_prints_nothing_more_and_an_unknown_total_counts() -> None:
    console, out = plain()
    clock = FakeClock()
    with RunProgress("ingesting", None, console=console, unit="rules", every_s=10, clock=clock) as bar:
        clock.t += 10
        bar.update(5000)
    assert out.getvalue().splitlines() == ["ingesting: 5000 rules, 0:00:10 elapsed"]
    with RunProgress("cases", None, console=console, clock=clock) as bar:
        bar.update(3, 7)  # the total arrives with the first report
    assert out.getvalue().splitlines()[-1] == "cases: 3/7 (43%), 0:00:00 elapsed"


def test_on_a_terminal_a_bar_is_drawn_instead_of_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RunProgress("judging", 4, console=console) as bar:
        for _ in range(4):
            bar.advance()
    text = out.getvalue()
    assert "judging" in text and "4/4" in text and "elapsed" not in text


def test_on_a_terminal_skipped_steps_count_towards_the_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RunProgress("judging", 10, console=console) as bar:
        bar.skip(7)
        bar.advance()
    assert bar.done == 8 and "8/10" in out.getvalue()


def test_time_left_comes_from_the_last_window_of_lines_so_one_slow_minute_does_not_swing_it() -> None:
    console, out = plain()
    clock = FakeClock()
    with RunProgress("judging", 1000, console=console, every_s=60, window_s=300, clock=clock) as bar:
        for done in (3, 6, 9, 12, 15, 18, 19):  # 3 a minute, then a minute with 1 (a long pair)
            clock.t += 60
            bar.update(done)
    lines = out.getvalue().splitlines()
    assert lines[5] == "judging: 18/1000 (2%), 0:06:00 elapsed, about 5:27:20 left"  # 15 in 5 min: 982 / 3 a min
    # 19: 13 pairs since the line 5 minutes earlier (6 at 0:02:00), not 1 in the last minute (16 h left)
    assert lines[6] == "judging: 19/1000 (2%), 0:07:00 elapsed, about 6:17:18 left"


def test_a_description_with_brackets_or_braces_prints_as_written() -> None:
    name = "batch b[bold]1[/x] {task}"
    console, out = plain()
    clock = FakeClock()
    with RunProgress(name, 2, console=console, clock=clock) as bar:
        bar.advance(2)
    assert out.getvalue().splitlines() == [f"{name}: 2/2 (100%), 0:00:00 elapsed"]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200, record=True)
    with RunProgress(name, 2, console=terminal, clock=clock) as bar:
        bar.advance(2)
    assert name in terminal.export_text()
