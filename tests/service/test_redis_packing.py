"""The service's async Redis client packs commands with hiredis: byte for byte what redis-py's
own Python packer sends, for every argument type the service uses, and the same refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from service.feedback_store import connect

_ARG = st.one_of(
    st.text(),
    st.binary(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _packed_class() -> type[Connection]:
    client = connect("redis://127.0.0.1:1", timeout=0.1)  # never connects
    cls = client.connection_pool.connection_class
    assert issubclass(cls, Connection) and cls is not Connection
    return cls


@given(name=st.sampled_from(["EVALSHA", "SCRIPT LOAD", "XADD"]), args=st.lists(_ARG))
def test_packs_like_redis_py(name: str, args: list[object]) -> None:
    ours, theirs = _packed_class()(), Connection()
    assert b"".join(ours.pack_command(name, *args)) == b"".join(theirs.pack_command(name, *args))


def test_packs_bytearray_and_memoryview_like_bytes() -> None:
    ours = _packed_class()()
    expected = ours.pack_command("SET", b"k", b"v")
    assert ours.pack_command("SET", bytearray(b"k"), memoryview(b"v")) == expected


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        _packed_class()().pack_command("SET", "k", bad)
