"""The memory cache: LRU bound, TTLs on an injected clock, exact JSON round-trips."""

import pytest
from twisted.internet import task

from broker.cache import MemoryCache


def result(d):
    """The result of an already-fired Deferred (the memory cache never waits)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def clock():
    return task.Clock()


def test_values_of_every_json_type_round_trip(clock):
    cache = MemoryCache(clock)
    values = {"dict": {"a": [1, 2.5, None], "é": {"x": True}}, "list": [1, "two", 3.0, False],
              "str": "zażółć ✓", "int": 2**70, "float": 0.1, "true": True, "false": False,
              "empty": "", "zero": 0, "nested": [[{"k": []}]]}
    for key, value in values.items():
        assert result(cache.set(key, value)) is True
    for key, value in values.items():
        got = result(cache.get(key))
        assert got == value and type(got) is type(value)
    assert result(cache.get_many(list(values) + ["absent"])) == values


def test_stored_value_is_a_copy(clock):
    cache = MemoryCache(clock)
    value = {"list": [1]}
    result(cache.set("k", value))
    value["list"].append(2)
    got = result(cache.get("k"))
    got["list"].append(3)
    assert result(cache.get("k")) == {"list": [1]}


def test_ttl_expires_on_the_clock(clock):
    cache = MemoryCache(clock)
    result(cache.set("k", "v", ttl=10))
    clock.advance(9.9)
    assert result(cache.get("k")) == "v"
    clock.advance(0.1)
    assert result(cache.get("k")) is None
    assert cache.counters["expired"] == 1 and len(cache) == 0


def test_default_ttl_applies_and_zero_means_forever(clock):
    cache = MemoryCache(clock, default_ttl=5)
    result(cache.set("short", 1))
    result(cache.set("forever", 2, ttl=0))
    clock.advance(5)
    assert result(cache.get_many(["short", "forever"])) == {"forever": 2}


def test_expire_changes_the_ttl_of_a_present_key_only(clock):
    cache = MemoryCache(clock)
    result(cache.set("k", "v"))
    assert result(cache.expire("k", 3)) is True
    assert result(cache.expire("absent", 3)) is False
    clock.advance(3)
    assert result(cache.get("k")) is None
    result(cache.set("k", "v", ttl=1))
    assert result(cache.expire("k", 0)) is True  # 0: keep forever
    clock.advance(100)
    assert result(cache.get("k")) == "v"


def test_lru_bound_evicts_least_recently_used(clock):
    cache = MemoryCache(clock, max_entries=3)
    for key in "abc":
        result(cache.set(key, key))
    result(cache.get("a"))           # a is now the most recently used
    result(cache.set("d", "d"))      # evicts b
    assert result(cache.get_many("abcd")) == {"a": "a", "c": "c", "d": "d"}
    assert len(cache) == 3 and cache.counters["evictions"] == 1


def test_delete_says_whether_the_key_was_there(clock):
    cache = MemoryCache(clock)
    result(cache.set("k", 1))
    assert result(cache.delete("k")) is True
    assert result(cache.delete("k")) is False
    assert result(cache.get("k")) is None


def test_incr_counts_from_zero_and_keeps_the_ttl(clock):
    cache = MemoryCache(clock)
    assert result(cache.incr("n")) == 1
    assert result(cache.incr("n", 41)) == 42
    assert result(cache.get("n")) == 42
    result(cache.set("t", 10, ttl=5))
    assert result(cache.incr("t", -3)) == 7
    clock.advance(5)
    assert result(cache.get("t")) is None


def test_incr_on_a_non_integer_is_a_clear_error(clock):
    cache = MemoryCache(clock)
    result(cache.set("s", "text"))
    with pytest.raises(ValueError, match="does not hold an integer"):
        result(cache.incr("s"))
    with pytest.raises(TypeError, match="must be an integer"):
        result(cache.incr("n", 1.5))


def test_bad_keys_values_and_ttls_fail_in_the_deferred(clock):
    cache = MemoryCache(clock, max_value_size=10)
    with pytest.raises(TypeError, match="non-empty string"):
        result(cache.get(1))
    with pytest.raises(TypeError):
        result(cache.set("k", object()))
    with pytest.raises(ValueError):
        result(cache.set("k", float("nan")))
    with pytest.raises(ValueError, match="ttl"):
        result(cache.set("k", 1, ttl=-1))
    with pytest.raises(ValueError, match="max_value_size"):
        result(cache.set("k", "x" * 20))
    assert cache.counters["too_large"] == 1


def test_hits_and_misses_are_counted(clock):
    cache = MemoryCache(clock)
    result(cache.set("a", 1))
    result(cache.get("a"))
    result(cache.get("b"))
    result(cache.get_many(["a", "c"]))
    metrics = cache.metrics()
    assert (metrics["backend"], metrics["hits"], metrics["misses"]) == ("memory", 2, 2)


def test_codec_keeps_big_integers_and_deep_values_exact():
    from broker.cache.base import decode, encode
    for value in (2 ** 64, -(2 ** 63) - 1, 10 ** 30, [[[[1]]]] * 300, {"a": "1" * 40}):
        assert decode(encode(value)) == value
        assert type(decode(encode(value))) is type(value)
