"""bench/profile.py's attribution of py-spy samples to categories, on hand-made stacks.
No profiler runs here and nothing is timed: the figures come from ``make bench``."""

from __future__ import annotations

import pytest

from bench.profile import (
    CATEGORIES,
    ENCODING,
    FILTERING,
    HTTP,
    OTHER,
    REDIS,
    ROUTING,
    SEARCH,
    SERIALISATION,
    attribute,
    categorise,
    module_path,
    parse_raw,
    top_frames,
    top_other,
)

TREE = "/src/veto-tree"
SITE = "/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"

# The outer frames every request shares: uvicorn's protocol, then the ASGI stack.
ASGI = (
    f"run_asgi ({SITE}/uvicorn/protocols/http/httptools_impl.py:401)",
    f"__call__ ({SITE}/fastapi/applications.py:1054)",
    f"__call__ ({SITE}/starlette/routing.py:715)",
    f"app ({SITE}/fastapi/routing.py:301)",
    f"run_endpoint_function ({SITE}/fastapi/routing.py:212)",
)
ROUTE = f"recommendations ({TREE}/service/routes.py:77)"
RECOMMEND = f"recommend ({TREE}/service/recommender.py:88)"
LOOP = (
    f"<module> ({TREE}/veto/cli/__main__.py:4)",
    f"run ({SITE}/uvicorn/main.py:580)",
    f"run ({STDLIB}/asyncio/runners.py:118)",
)
WORKER = (
    f"_bootstrap ({STDLIB}/threading.py:1002)",
    f"_worker ({STDLIB}/concurrent/futures/thread.py:83)",
)

SAMPLES = {
    "encoder under the route": (
        (
            *ASGI,
            ROUTE,
            RECOMMEND,
            f"encode ({TREE}/veto/encoder.py:120)",
            f"sum ({SITE}/numpy/core/fromnumeric.py:2313)",
        ),
        ENCODING,
    ),
    "service code under FastAPI is not routing": (
        (*ASGI, ROUTE, RECOMMEND, f"history_rows ({TREE}/service/retrieval.py:40)"),
        OTHER,
    ),
    "faiss in an executor thread": (
        (
            *WORKER,
            f"rank ({TREE}/service/retrieval.py:70)",
            f"nearest ({TREE}/veto/search.py:31)",
            f"replacement_search ({SITE}/faiss/class_wrappers.py:329)",
        ),
        SEARCH,
    ),
    "asyncio below redis-py": (
        (
            *ASGI,
            ROUTE,
            RECOMMEND,
            f"read_user ({TREE}/service/feedback_store.py:90)",
            f"execute_command ({SITE}/redis/asyncio/client.py:605)",
            f"readuntil ({STDLIB}/asyncio/streams.py:560)",
        ),
        REDIS,
    ),
    "ranking core": (
        (*ASGI, ROUTE, RECOMMEND, f"adjust_scores ({TREE}/veto/ranking.py:55)"),
        FILTERING,
    ),
    "the event loop itself is not HTTP": (
        (*LOOP, f"run_until_complete ({STDLIB}/asyncio/base_events.py:640)"),
        OTHER,
    ),
    "httptools callbacks": (
        (*LOOP, f"on_headers_complete ({SITE}/uvicorn/protocols/http/httptools_impl.py:290)"),
        HTTP,
    ),
    "pydantic validating a dependency": (
        (
            *ASGI[:4],
            f"solve_dependencies ({SITE}/fastapi/dependencies/utils.py:600)",
            f"validate_python ({SITE}/pydantic/type_adapter.py:135)",
        ),
        ROUTING,
    ),
    "FastAPI's response serialisation": (
        (
            *ASGI[:4],
            f"serialize_response ({SITE}/fastapi/routing.py:150)",
            f"jsonable_encoder ({SITE}/fastapi/encoders.py:290)",
        ),
        SERIALISATION,
    ),
    "stdlib json under a starlette response": (
        (
            *ASGI[:4],
            f"render ({SITE}/starlette/responses.py:180)",
            f"encode ({STDLIB}/json/encoder.py:200)",
        ),
        SERIALISATION,
    ),
    "a C call named by its source line": ((*ASGI, ROUTE), SERIALISATION),
    "middleware": (
        (*ASGI[:2], f"__call__ ({TREE}/service/middleware.py:60)"),
        ROUTING,
    ),
}

SOURCE = {
    (f"{TREE}/service/routes.py", 77): (
        '        return Response(found.model_dump_json(), media_type="application/json")'
    ),
}


def _source_line(path: str, line: int) -> str:
    return SOURCE.get((path, line), "")


def _raw(frames: tuple[str, ...], count: int) -> str:
    return ";".join(frames) + f" {count}"


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_stack_goes_to_the_category_of_its_innermost_named_frame(name: str) -> None:
    frames, expected = SAMPLES[name]
    (sample,) = parse_raw(_raw(frames, 1), tree=TREE)
    assert categorise(sample.frames, source_line=_source_line) == expected


def test_attribute_counts_every_sample_once_in_every_category() -> None:
    text = "\n".join(_raw(f, n + 1) for n, (f, _) in enumerate(SAMPLES.values()))
    samples = parse_raw(text + "\nnot a sample line\n", tree=TREE)
    counts = attribute(samples, source_line=_source_line)
    assert set(counts) == set(CATEGORIES)
    assert sum(counts.values()) == sum(range(1, len(SAMPLES) + 1))
    expected = dict.fromkeys(CATEGORIES, 0)
    for n, (_, category) in enumerate(SAMPLES.values()):
        expected[category] += n + 1
    assert counts == expected


def test_other_is_listed_by_innermost_function() -> None:
    text = "\n".join(_raw(f, 5) for f, c in SAMPLES.values() if c == OTHER)
    top = top_other(parse_raw(text, tree=TREE), source_line=_source_line)
    assert dict(top) == {
        "service/retrieval.py:history_rows": 5,
        "asyncio/base_events.py:run_until_complete": 5,
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{TREE}/service/routes.py", "service/routes.py"),
        (f"{SITE}/fastapi/routing.py", "fastapi/routing.py"),
        (f"{STDLIB}/json/encoder.py", "json/encoder.py"),
        ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>"),
    ],
)
def test_module_path_starts_at_the_package(path: str, expected: str) -> None:
    assert module_path(path, TREE) == expected


def test_top_frames_names_what_a_category_spends_its_samples_on() -> None:
    text = "\n".join(_raw(f, 2) for f, c in SAMPLES.values() if c == SERIALISATION)
    top = dict(top_frames(parse_raw(text, tree=TREE), SERIALISATION, source_line=_source_line))
    assert top == {
        "fastapi/encoders.py:jsonable_encoder": 2,
        "json/encoder.py:encode": 2,
        "service/routes.py:recommendations": 2,
    }
