"""--isolate-default and --require-isolation: the isolation in force for each request (pure),
and the flags, checked against this host at start-up."""

import os

import pytest

from jogger.engine import Isolation
from jogger.server.config import ConfigError, load
from jogger.server.isolation import IsolationPolicy, IsolationRefused, Network
from tests.pki import Pki

NOTHING = Isolation()


def kinds(text: str) -> Isolation:
    return Isolation.parse(text)


def test_a_request_that_does_not_say_gets_the_default_read_only_root_included() -> None:
    policy = IsolationPolicy(default=kinds("pid,read-only-root"))
    assert policy.resolve(None) == kinds("pid,mount,read-only-root")
    assert IsolationPolicy().resolve(None) == NOTHING


def test_a_request_that_says_gets_what_it_says_and_not_the_default() -> None:
    policy = IsolationPolicy(default=kinds("all,read-only-root"))
    assert policy.resolve(kinds("pid")) == kinds("pid")
    assert policy.resolve(NOTHING) == NOTHING  # explicitly none: no default
    assert IsolationPolicy(default=kinds("uts")).resolve(kinds("read-only-root")) == kinds(
        "mount,read-only-root"
    )


def test_a_read_only_root_alone_goes_over_the_default_or_the_request() -> None:
    policy = IsolationPolicy(default=kinds("pid,net"))
    assert policy.resolve(None, read_only_root=True) == kinds("pid,net,read-only-root")
    assert policy.resolve(kinds("uts"), read_only_root=True) == kinds("uts,read-only-root")
    assert policy.resolve(NOTHING, read_only_root=True) == kinds("read-only-root")
    assert IsolationPolicy().resolve(None, read_only_root=True) == kinds("read-only-root")


def test_network_none_adds_the_network_namespace() -> None:
    policy = IsolationPolicy(default=kinds("pid"))
    assert policy.resolve(None, Network.NONE) == kinds("pid,net")
    assert policy.resolve(NOTHING, Network.NONE) == kinds("net")
    assert policy.resolve(kinds("net"), Network.NONE) == kinds("net")


def test_network_host_takes_the_network_namespace_away() -> None:
    policy = IsolationPolicy(default=kinds("all"))
    assert policy.resolve(None, Network.HOST) == kinds("pid,mount,ipc,uts")
    assert policy.resolve(kinds("net,uts"), Network.HOST) == kinds("uts")
    assert policy.resolve(NOTHING, Network.HOST) == NOTHING


def test_what_is_required_is_added_to_whatever_was_asked() -> None:
    policy = IsolationPolicy(default=kinds("ipc"), required=kinds("pid,read-only-root"))
    required = kinds("pid,mount,read-only-root")
    assert policy.resolve(None) == kinds("ipc,pid,mount,read-only-root")
    assert policy.resolve(NOTHING) == required  # asking for none is not an error
    assert policy.resolve(kinds("uts")) == kinds("uts,pid,mount,read-only-root")
    assert policy.resolve(NOTHING, Network.NONE) == kinds("net,pid,mount,read-only-root")


def test_a_required_network_namespace_is_added_even_to_a_host_network_by_default() -> None:
    # The default's network goes only when the request asks for the host's network; a
    # request that does not say still gets the required one.
    policy = IsolationPolicy(required=kinds("net"))
    assert policy.resolve(None) == kinds("net")
    assert policy.resolve(NOTHING) == kinds("net")


def test_the_hosts_network_is_refused_when_a_network_namespace_is_required() -> None:
    policy = IsolationPolicy(required=kinds("net"))
    for asked in (None, NOTHING, kinds("pid")):
        with pytest.raises(IsolationRefused, match="--require-isolation net") as refused:
            policy.resolve(asked, Network.HOST)
    assert str(refused.value) == (
        "this server gives every job a network namespace of its own (--require-isolation "
        "net): the host's network is not to be had"
    )
    # Only the network namespace's requirement stands in its way.
    assert IsolationPolicy(required=kinds("all")).resolve(None) == kinds("all")
    assert IsolationPolicy(required=kinds("pid,uts")).resolve(kinds("net"), Network.HOST) == kinds(
        "pid,uts"
    )


def test_the_policy_describes_itself_for_the_log() -> None:
    assert IsolationPolicy().describe() == "isolate_default=none require_isolation=none"
    policy = IsolationPolicy(default=kinds("pid,net"), required=kinds("read-only-root"))
    assert policy.describe() == "isolate_default=pid,net require_isolation=mount,read-only-root"


def load_with(pki: Pki, *flags: str) -> IsolationPolicy:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    return load([*tls, *flags]).isolation


def test_without_the_flags_no_job_is_isolated_unless_it_asks(pki: Pki) -> None:
    assert load_with(pki) == IsolationPolicy(NOTHING, NOTHING)


@pytest.mark.parametrize("flag", ["--isolate-default", "--require-isolation"])
@pytest.mark.parametrize(
    ("value", "told"),
    [
        ("bogus", "unknown isolation 'bogus'"),
        ("pid,network", "unknown isolation 'network'"),
        ("none,pid", "unknown isolation 'none'"),
    ],
)
def test_an_unknown_kind_is_a_config_error_naming_the_flag(
    pki: Pki, flag: str, value: str, told: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_with(pki, flag, value)
    assert str(error.value) == (
        f"{flag} {value}: {told}: pick from all, none, pid, mount, net, ipc, uts or read-only-root"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root can make namespaces")
@pytest.mark.parametrize("flag", ["--isolate-default", "--require-isolation"])
def test_without_root_an_isolation_policy_is_a_config_error(pki: Pki, flag: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_with(pki, flag, "net")
    assert str(error.value) == (
        f"{flag} net: this server cannot isolate jobs: making namespaces needs root "
        f"(CAP_SYS_ADMIN), and it runs as uid {os.geteuid()} without it"
    )
    # Saying none needs nothing.
    assert load_with(pki, flag, "none") == IsolationPolicy()


@pytest.mark.skipif(os.geteuid() != 0, reason="making namespaces needs root")
def test_as_root_the_flags_reach_the_policy(pki: Pki) -> None:
    policy = load_with(
        pki, "--isolate-default", "pid,uts", "--require-isolation", "net,read-only-root"
    )
    assert policy == IsolationPolicy(kinds("pid,uts"), kinds("net,mount,read-only-root"))
    assert load_with(pki, "--isolate-default", "all").default == kinds("all")
