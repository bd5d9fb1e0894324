"""single_errors (jogger/_exceptiongroups.py): no caller of ours sees a group of one."""

import pytest
import trio

from jogger._exceptiongroups import single_errors


def test_a_group_of_one_becomes_its_exception() -> None:
    inner = ValueError("bad")
    with pytest.raises(ValueError, match="bad") as info, single_errors():
        raise ExceptionGroup("one", [inner])
    assert info.value is inner
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # the group is not shown as its context


def test_nested_groups_of_one_become_the_innermost_exception() -> None:
    inner = KeyError("deep")
    with pytest.raises(KeyError) as info, single_errors():
        raise ExceptionGroup("outer", [ExceptionGroup("middle", [ExceptionGroup("x", [inner])])])
    assert info.value is inner


def test_a_group_of_several_is_raised_as_it_is() -> None:
    group = ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    with pytest.raises(ExceptionGroup) as info, single_errors():
        raise group
    assert info.value is group


def test_a_group_of_one_around_a_group_of_several_gives_the_several() -> None:
    several = ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    with pytest.raises(ExceptionGroup) as info, single_errors():
        raise ExceptionGroup("one", [several])
    assert info.value is several


def test_a_base_exception_comes_out_of_its_group() -> None:
    with pytest.raises(KeyboardInterrupt), single_errors():
        raise BaseExceptionGroup("one", [KeyboardInterrupt()])


def test_other_exceptions_and_none_pass_through() -> None:
    error = OSError("plain")
    with pytest.raises(OSError, match="plain") as info, single_errors():
        raise error
    assert info.value is error
    with single_errors():
        pass


async def test_a_failing_task_in_a_nursery_reaches_the_caller_as_itself() -> None:
    async def fail() -> None:
        raise ValueError("from a task")

    with pytest.raises(ValueError, match="from a task"), single_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
