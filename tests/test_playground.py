"""The browser playground, driven in a real headless Chromium (Debian's chromium, through Playwright).

Each form is filled and submitted as a person would; what the page renders is compared with the API's own answer
for the same input, and the curl command and Python call the page shows are run to give that same answer. Server
errors must appear as readable messages. A screenshot of each form after a real request goes to docs/img/.
Without a Chromium these tests fail: they never skip.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, sync_playwright

from assay.api.playground import PAGE_FILES
from tests.conftest import ROOT
from tests.server import RunningServer, start_server

SCREENSHOTS = Path(os.environ.get("ASSAY_SCREENSHOTS", ROOT / "docs" / "img"))
TOKEN = "playground-token"
#: consumer group -> test model; "distilbert" is removed during the error test (a group that no longer exists).
GROUPS = {"primary": "minilm-classifier", "rerank": "minilm-reranker", "nli": "minilm-nli", "qa": "minilm-qa",
          "distilbert": "tiny-distilbert", "embed": "minilm-embed"}
#: Low limits, so that a form can run into them: a 1000-byte text, 8 queued inputs per group.
LIMITS = {"TAKEOFF_MAX_PROMPT_STRING_BYTES": "1000", "TAKEOFF_MAX_QUEUED_REQUESTS": "8",
          "TAKEOFF_MANAGEMENT_TOKEN": TOKEN}
DESKTOP = {"width": 1000, "height": 900}
PHONE = {"width": 375, "height": 740}


def chromium_executable() -> str:
    """Debian's chromium (``apt-get install -y chromium``, as .ci/run does), or ASSAY_CHROMIUM."""
    path = os.environ.get("ASSAY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium for the browser tests: install Debian's package (apt-get install -y chromium, "
                    "as .ci/run does) or set ASSAY_CHROMIUM to a Chromium executable", pytrace=False)
    return path


@pytest.fixture(scope="module")
def playground(models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own, with low limits; model folders named models/<name> so pages and screenshots read well."""
    tmp = tmp_path_factory.mktemp("playground")
    (tmp / "models").mkdir()
    for name in set(GROUPS.values()):
        (tmp / "models" / name).symlink_to(models[name], target_is_directory=True)
    readers = {group: {"model_name": f"models/{name}", "consumer_group": group, "dtype": "float32", "device": "cpu"}
               for group, name in GROUPS.items()}
    running = start_server(tmp, readers=readers, env=LIMITS, cwd=tmp)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=chromium_executable(), args=["--disable-dev-shm-usage"])
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, playground: RunningServer) -> Iterator[Page]:
    """A fresh page; afterwards, it must have raised no error and asked nothing of any other origin."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    problems: list[str] = []
    elsewhere: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    # A 4xx answer is logged as "Failed to load resource"; anything else (a CSP refusal, say) is a fault.
    tab.on("console", lambda message: problems.append(message.text)
           if message.type == "error" and "Failed to load resource" not in message.text else None)
    tab.on("request", lambda request: elsewhere.append(request.url)
           if urlsplit(request.url).scheme in ("http", "https") and not request.url.startswith(playground.url + "/")
           else None)
    yield tab
    context.close()
    assert problems == []
    assert elsewhere == []


def open_playground(page: Page, server: RunningServer, path: str = "/") -> None:
    page.goto(server.url + path)
    page.wait_for_selector("#groups-table tbody tr")


def choose(page: Page, group: str, form: str) -> None:
    page.get_by_label("Consumer group", exact=True).select_option(group)
    if page.locator(f"#choice-{form}").count():
        page.locator(f"#choice-{form}").check()
    assert page.locator(f"#form-{form}").is_visible()


def field(page: Page, form: str, label: str, *, exact: bool = False) -> Locator:
    """A control of one form, found by its label (so that every control the tests use has one)."""
    return page.locator(f"#form-{form}").get_by_label(label, exact=exact)


def submit(page: Page, form: str) -> None:
    page.locator(f"#form-{form} button[type=submit]").click()
    wait_for_answer(page)


def wait_for_answer(page: Page) -> None:
    page.wait_for_function("() => document.getElementById('busy').textContent === '' && "
                           "!document.getElementById('output').hidden")


def rendered_bars(page: Page) -> list[dict[str, str]]:
    return page.eval_on_selector_all("#result .bars .bar", """rows => rows.map(row => ({
        label: row.querySelector('.bar-label').textContent,
        value: row.querySelector('.bar-value').dataset.value,
        text: row.querySelector('.bar-value').textContent}))""")


def assert_bars(page: Page, expected: list[tuple[str, float]]) -> None:
    """The bars name the API's labels in its order, carry its exact scores and show them rounded."""
    bars = rendered_bars(page)
    assert [bar["label"] for bar in bars] == [label for label, _ in expected]
    for bar, (_, score) in zip(bars, expected, strict=True):
        assert float(bar["value"]) == score
        assert float(bar["text"]) == pytest.approx(score, rel=5e-3, abs=5e-5)


def api(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def assert_same(a: Any, b: Any) -> None:
    """Equal JSON, floats to 1e-6 (two forward passes of the same input)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a, b)
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b


def run_python(code: str) -> Any:
    """Run a snippet whose last line is an expression; its value, as JSON."""
    tree = ast.parse(code)
    last = tree.body[-1]
    assert isinstance(last, ast.Expr), code
    tree.body[-1] = ast.parse(f"print(__import__('json').dumps({ast.unparse(last.value)}))").body[0]
    done = subprocess.run([sys.executable, "-c", ast.unparse(tree)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_call(page: Page, server: RunningServer, index: int, path: str, body: dict[str, Any], answer: Any,
               *, takeoff_client: bool = False) -> None:
    """The page's request panel: its latency, a curl command that sends ``body`` to ``path``, and a Python call
    (takeoff-client where it can send this request) that both answer ``answer`` (bar a rerank answer's id, which
    is the request's own id)."""
    panel = page.locator("#calls .call").nth(index)
    assert float(panel.locator(".latency").get_attribute("data-ms") or "0") > 0
    assert re.search(r"Latency: \d+ ms", panel.locator(".latency").inner_text())
    curl = panel.locator("code[data-snippet=curl]").text_content() or ""
    argv = shlex.split(curl)
    assert argv[:6] == ["curl", "-s", server.url + path, "-H", "content-type: application/json", "-d"], curl
    assert len(argv) == 7 and json.loads(argv[6]) == body
    replayed = httpx.post(argv[2], content=argv[6].encode(), headers={"content-type": argv[4].split(": ")[1]},
                          timeout=60)
    assert_same(without_id(replayed.json()), without_id(answer))
    python = panel.locator("code[data-snippet=python]").text_content() or ""
    if takeoff_client:
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        assert f'TakeoffClient(base_url="http://{host}", port={port})' in python
        assert ".classify(" in python
    else:
        assert "httpx.post(" in python and "takeoff_client" not in python
    assert_same(without_id(run_python(python)), without_id(answer))


def without_id(answer: Any) -> Any:
    return {**answer, "id": None} if isinstance(answer, dict) and "id" in answer else answer


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"playground-{name}.png"), full_page=True)


# ------------------------------------------------------------------------------------------------ serving


def test_the_page_is_served_at_root_and_playground_and_loads_nothing_from_elsewhere(playground):
    index = httpx.get(playground.url + "/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert httpx.get(playground.url + "/playground").content == index.content
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for name, media_type in PAGE_FILES.items():
        response = httpx.get(playground.url + ("/" if name == "index.html" else f"/playground/{name}"))
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        assert not re.search(r"https?://|(src|href)=\"//", response.text), name
    spec = httpx.get(playground.url + "/openapi.json").json()
    assert "/groups" in spec["paths"] and not {"/", "/playground"} & set(spec["paths"])


def test_the_inference_port_needs_no_token_for_the_page_and_management_still_does(playground):
    for path in ("/", "/playground/app.js", "/groups"):
        assert httpx.get(playground.url + path).status_code == 200
    assert httpx.get(playground.management_url + "/reader_groups").status_code == 401


def test_a_built_wheel_ships_the_page(tmp_path):
    """Package data: a non-editable install serves the page too."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = tmp_path / "dist" / done.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"assay/playground/{name}" for name in PAGE_FILES} <= names


# ------------------------------------------------------------------------------------------------ forms


def test_classification_form_shows_labels_and_raw_logits_as_the_api_answers(page, playground):
    open_playground(page, playground)
    choose(page, "primary", "classify")
    text = "The battery died after two days; I want my money back."
    field(page, "classify", "Text", exact=True).fill(text)
    field(page, "classify", "Also show the raw logits").check()
    submit(page, "classify")

    labels_body = {"text": text, "consumer_group": "primary", "return": "labels"}
    labels = api(playground, "/classify", labels_body).json()["result"]
    assert_bars(page, [(item["label"], item["score"]) for item in labels])
    raw_body = {"text": text, "consumer_group": "primary"}
    raw = api(playground, "/classify", raw_body).json()["result"]
    logits = page.eval_on_selector_all("#result .logits td.logit", "cells => cells.map(c => Number(c.dataset.value))")
    assert logits == raw
    names = page.eval_on_selector_all("#result .logits tbody th", "cells => cells.map(c => c.textContent)")
    assert names == ["negative", "neutral", "positive"]
    assert page.locator("#error").is_hidden()
    check_call(page, playground, 0, "/classify", labels_body, {"result": labels})
    check_call(page, playground, 1, "/classify", raw_body, {"result": raw}, takeoff_client=True)
    screenshot(page, "classify")


def test_a_pair_is_classified_as_a_pair(page, playground):
    open_playground(page, playground, "/playground?group=nli&form=classify")
    assert page.get_by_label("Consumer group", exact=True).input_value() == "nli"
    premise, hypothesis = "A man is playing a guitar on stage.", "Someone is making music."
    field(page, "classify", "Text", exact=True).fill(premise)
    field(page, "classify", "Second text").fill(hypothesis)
    submit(page, "classify")
    body = {"text": [[premise, hypothesis]], "consumer_group": "nli", "return": "labels"}
    answer = api(playground, "/classify", body).json()
    assert_bars(page, [(item["label"], item["score"]) for item in answer["result"][0]])
    check_call(page, playground, 0, "/classify", body, answer)


def test_reranking_form_sorts_documents_as_the_api_does(page, playground):
    open_playground(page, playground)
    choose(page, "rerank", "rerank")
    query = "How do I bake bread at home?"
    documents = ["Preheat the oven and knead the dough for ten minutes.", "The stock market closed higher today.",
                 "Bread needs flour, water, yeast and salt.", "Cats sleep for most of the day."]
    field(page, "rerank", "Query").fill(query)
    field(page, "rerank", "Documents").fill("\n".join(documents) + "\n\n")
    submit(page, "rerank")

    body = {"query": query, "documents": documents, "consumer_group": "rerank"}
    answer = api(playground, "/rerank", body).json()
    assert_bars(page, [(documents[r["index"]], r["relevance_score"]) for r in answer["results"]])
    check_call(page, playground, 0, "/rerank", body, answer)
    screenshot(page, "rerank")


def test_zero_shot_form_ranks_the_candidate_labels_as_the_api_does(page, playground):
    open_playground(page, playground)
    choose(page, "nli", "zero_shot")
    text = "The striker scored twice in the final minutes of the match."
    field(page, "zero_shot", "Text", exact=True).fill(text)
    field(page, "zero_shot", "Candidate labels").fill("sports, politics ,cooking,, travel")
    submit(page, "zero_shot")

    body = {"text": text, "candidate_labels": ["sports", "politics", "cooking", "travel"], "consumer_group": "nli"}
    answer = api(playground, "/zero_shot", body).json()
    result = answer["result"]
    assert_bars(page, list(zip(result["labels"], result["scores"], strict=True)))
    check_call(page, playground, 0, "/zero_shot", body, answer)
    screenshot(page, "zero-shot")

    field(page, "zero_shot", "Hypothesis template").fill("This text is about {}.")
    field(page, "zero_shot", "Score each label on its own").check()
    submit(page, "zero_shot")
    body |= {"hypothesis_template": "This text is about {}.", "multi_label": True}
    result = api(playground, "/zero_shot", body).json()["result"]
    assert_bars(page, list(zip(result["labels"], result["scores"], strict=True)))


def test_question_answering_form_highlights_the_answer_in_the_context(page, playground):
    open_playground(page, playground)
    choose(page, "qa", "qa")
    assert page.locator("#form-choice").is_hidden()  # one form fits a QA model
    # Characters outside the BMP before the answer: offsets count code points, as Python does.
    question, context = "What is the capital of France?", "🇫🇷 Paris is the capital and largest city of France."
    field(page, "qa", "Question").fill(question)
    field(page, "qa", "Context", exact=True).fill(context)
    field(page, "qa", "Answers").fill("3")
    submit(page, "qa")

    body = {"text": [[question, context]], "consumer_group": "qa", "qa": {"top_k": 3}}
    answer = api(playground, "/classify", body).json()
    answers = answer["result"][0]
    best = answers[0]
    assert page.locator("#result mark").text_content() == context[best["start"]:best["end"]] == best["answer"]
    assert page.locator("#result .context").text_content().startswith(context)
    assert_bars(page, [(a["answer"] or "(no answer)", a["score"]) for a in answers])
    check_call(page, playground, 0, "/classify", body, answer)
    screenshot(page, "qa")


def test_embeddings_form_shows_the_cosine_heat_map_of_the_served_vectors(page, playground):
    sentences = ["A man is eating food.", "A man eats bread.", "The sky is blue."]
    open_playground(page, playground)
    choose(page, "embed", "embed")  # an embedding group offers the embeddings form and, by cosine, reranking
    assert page.locator("#choice-rerank").count() == 1
    field(page, "embed", "Sentences").fill("\n".join(sentences))
    submit(page, "embed")

    body = {"text": sentences, "consumer_group": "embed"}
    answer = api(playground, "/embed", body).json()
    vectors = answer["result"]
    expected = [[sum(x * y for x, y in zip(a, b, strict=True)) for b in vectors] for a in vectors]
    cells = page.eval_on_selector_all("#result .heatmap tbody tr", """rows => rows.map(row =>
        [...row.querySelectorAll('td.heat')].map(cell => [Number(cell.dataset.value), cell.textContent]))""")
    assert [value for row in cells for value, _ in row] == pytest.approx([v for row in expected for v in row],
                                                                         abs=1e-5)
    assert [[text for _, text in row] for row in cells] == [[f"{v:.2f}" for v in row] for row in expected]
    assert expected[0][1] > expected[0][2]  # the two sentences about eating are the closest pair
    check_call(page, playground, 0, "/embed", body, answer)
    screenshot(page, "embed")


# ------------------------------------------------------------------------------------------------ errors


def error_text(page: Page) -> str:
    page.locator("#error").wait_for(state="visible")
    return page.locator("#error").inner_text()


def test_server_errors_appear_as_readable_messages(page, playground):
    open_playground(page, playground)

    choose(page, "primary", "classify")
    text = "far too long " * 100
    field(page, "classify", "Text", exact=True).fill(text)
    submit(page, "classify")
    refused = api(playground, "/classify", {"text": text, "consumer_group": "primary", "return": "labels"})
    assert refused.status_code == 413
    shown = error_text(page)
    assert "Too large (HTTP 413)" in shown and refused.json()["error"]["message"] in shown
    assert page.locator("#result .bar").count() == 0
    assert page.locator("#calls .call").count() == 1  # the failed request's curl, to reproduce it

    choose(page, "rerank", "rerank")
    documents = [f"document number {i}" for i in range(9)]  # 9 inputs for a queue of 8
    field(page, "rerank", "Documents").fill("\n".join(documents))
    submit(page, "rerank")
    overloaded = api(playground, "/rerank", {"query": field(page, "rerank", "Query").input_value(),
                                             "documents": documents, "consumer_group": "rerank"})
    assert overloaded.status_code == 429
    shown = error_text(page)
    assert "Overloaded (HTTP 429)" in shown and overloaded.json()["error"]["message"] in shown
    assert "Retry after 1 s." in shown

    choose(page, "distilbert", "classify")
    removed = httpx.delete(playground.management_url + "/reader/distilbert",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert removed.status_code == 200
    field(page, "classify", "Text", exact=True).fill("a short text")
    submit(page, "classify")
    shown = error_text(page)
    assert "Unknown consumer group (HTTP 404)" in shown
    assert "consumer group 'distilbert' does not exist" in shown and "press Refresh" in shown
    screenshot(page, "error")
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_function("() => ![...document.querySelectorAll('#group option')].some(o => o.value === 'distilbert')")

    page.route(playground.url + "/zero_shot", lambda route: route.abort())
    choose(page, "nli", "zero_shot")
    submit(page, "zero_shot")
    assert "Server unreachable" in error_text(page)

    field(page, "zero_shot", "Candidate labels").fill(" , ")
    submit(page, "zero_shot")
    assert "Enter at least one candidate label." in error_text(page)


# ------------------------------------------------------------------------------------------------ access


def test_every_control_has_a_label(page, playground):
    open_playground(page, playground)
    for group, form in (("primary", "classify"), ("rerank", "rerank"), ("nli", "zero_shot"), ("qa", "qa")):
        choose(page, group, form)
        submit(page, form)
        unlabelled = page.eval_on_selector_all("input, select, textarea, button", """controls => controls
            .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                         && !(c.tagName === 'BUTTON' && c.textContent.trim()))
            .map(c => c.outerHTML)""")
        assert unlabelled == []


def test_a_keyboard_alone_can_choose_a_group_fill_a_form_and_submit(page, playground):
    open_playground(page, playground)

    def tab_to(selector: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement === document.querySelector({json.dumps(selector)})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#group")
    page.keyboard.type("qa")
    assert page.locator("#form-qa").is_visible()
    tab_to("#qa-question")
    page.keyboard.press("Control+A")
    page.keyboard.type("Who wrote the letter?")
    tab_to("#qa-context")
    page.keyboard.press("Control+A")
    page.keyboard.type("The letter was written by Ada Lovelace in 1843.")
    tab_to("#form-qa button[type=submit]")
    page.keyboard.press("Enter")
    wait_for_answer(page)
    body = {"text": [["Who wrote the letter?", "The letter was written by Ada Lovelace in 1843."]],
            "consumer_group": "qa", "qa": {"top_k": 1}}
    best = api(playground, "/classify", body).json()["result"][0][0]
    assert page.locator("#result mark").text_content() == best["answer"]


def test_the_page_fits_a_phone_screen(page, playground):
    page.set_viewport_size(PHONE)
    open_playground(page, playground)
    choose(page, "primary", "classify")
    field(page, "classify", "Also show the raw logits").check()
    submit(page, "classify")
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width
    # The group table turns into one card per group, each field named.
    assert page.locator("#groups-table thead").bounding_box()["height"] <= 1
    assert page.locator("#groups-table tbody th").first.evaluate(
        "cell => getComputedStyle(cell, '::before').content") == '"Group: "'
