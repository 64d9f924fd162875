"""The background stages run in their declared order; a stage that did something wakes what follows."""

from __future__ import annotations

from connector.pipeline.stages import Stage, background_stages, run_stages


def test_the_declared_order_is_enrich_then_route_which_wakes_delivery() -> None:
    woken: list[str] = []
    stages = background_stages(enrich=lambda: 0, route=lambda: 0, deliver=lambda: woken.append("deliver"))
    assert [stage.name for stage in stages] == ["enrich", "route"]
    assert stages[0].then is None
    assert stages[1].then is not None
    stages[1].then()
    assert woken == ["deliver"]


def test_stages_run_in_order_and_only_a_stage_that_did_something_wakes_the_next_loop() -> None:
    calls: list[str] = []

    def step(name: str, done: int) -> Stage:
        def run_once() -> int:
            calls.append(name)
            return done

        return Stage(name, run_once, then=lambda: calls.append(f"wake after {name}"))

    assert run_stages([step("first", 3), step("idle", 0), step("busy", 2)]) == 3
    assert calls == ["first", "wake after first", "idle", "busy", "wake after busy"]


def test_the_loop_measures_work_by_the_first_stage() -> None:
    assert run_stages([Stage("enrich", lambda: 0), Stage("route", lambda: 5)]) == 0
