// The Assay playground: lists the consumer groups (GET /groups), offers the form that fits the chosen group's
// model, sends the request a client would send, and shows the answer, the latency, and the curl command and
// Python call that give the same answer. Plain DOM and fetch; nothing is loaded from anywhere but this server.
"use strict";

const DEFAULT_TEMPLATE = "This example is {}.";

/** What each form is called in the "What to try" choice, in the order a group offers them. */
const FORM_TITLES = {
  rerank: "Rerank documents",
  zero_shot: "Zero-shot labels",
  classify: "Classify text",
  qa: "Answer a question",
  embed: "Compare sentences",
};

/** Readable names for the server's error types (README, Errors). */
const ERROR_TITLES = {
  malformed_json: "Malformed request",
  not_found: "Unknown consumer group",
  too_large: "Too large",
  invalid_input: "Invalid input",
  overloaded: "Overloaded",
  internal_error: "Internal error",
  not_ready: "Not ready",
  reader_unavailable: "Reader unavailable",
  shutting_down: "Shutting down",
  deadline_exceeded: "Deadline exceeded",
  network_error: "Server unreachable",
};

const state = {
  /** GET /groups' answer. */
  groups: [],
  /** The forms offered for the selected group, and the one shown. */
  forms: [],
  form: null,
  /** True while a request is in flight (the submit button stays focusable, so it is not disabled). */
  busy: false,
  /** Pending refresh while some group is loading. */
  poll: null,
};

const $ = (id) => document.getElementById(id);

/** An element with attributes (``text`` sets textContent, ``class`` the class) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// ------------------------------------------------------------------------------------------------ groups

function formsFor(group) {
  if (group.task === "question_answering") return ["qa"];
  if (group.task === "embedding") return ["embed", "rerank"];
  if (group.task !== "classification") return [];
  const forms = [];
  if (group.reranker) forms.push("rerank");
  if (group.zero_shot) forms.push("zero_shot");
  forms.push("classify");
  return forms;
}

async function loadGroups() {
  const message = $("groups-message");
  const errorBox = $("groups-error");
  message.textContent = "Loading the consumer groups…";
  let response;
  let data;
  try {
    response = await fetch("/groups", { headers: { accept: "application/json" } });
    data = await response.json();
  } catch (err) {
    message.textContent = "";
    showBox(errorBox, [el("strong", { text: "Could not load the consumer groups" }),
      el("p", { text: `${err.message}. Is the server running? Press Refresh to try again.` })]);
    return;
  }
  if (!response.ok) {
    message.textContent = "";
    showBox(errorBox, errorParts({ status: response.status, error: data && data.error, headers: response.headers }));
    return;
  }
  errorBox.hidden = true;
  state.groups = data.groups;
  const loading = state.groups.filter((g) => g.status === "loading").length;
  message.textContent = state.groups.length === 0
    ? "This server has no consumer groups yet: add a reader on the management port (POST /reader)."
    : `${state.groups.length} consumer group${state.groups.length === 1 ? "" : "s"}` +
      (loading ? `, ${loading} still loading (the list refreshes itself)` : "") + ".";
  renderGroups();
  clearTimeout(state.poll);
  if (loading) state.poll = setTimeout(loadGroups, 3000);
}

function renderGroups() {
  const body = $("groups-table").tBodies[0];
  body.replaceChildren(...state.groups.map((g) => el("tr", {},
    el("th", { scope: "row", "data-label": "Group", text: g.name }),
    el("td", { "data-label": "Model", class: "model", text: g.model_name }),
    el("td", { "data-label": "Task", text: g.task ? g.task.replace("_", " ") : "(not loaded)" }),
    el("td", { "data-label": "Dtype", text: g.dtype }),
    el("td", { "data-label": "Status" }, el("span", { class: `status status-${g.status}`, text: g.status })),
  )));

  const select = $("group");
  // Keep the choice; else the one in the address; else primary, the group a request without one goes to.
  const wanted = select.value || new URLSearchParams(location.search).get("group") || "primary";
  select.replaceChildren(...state.groups.map((g) => el("option", {
    value: g.name, text: `${g.name} (${g.task ? g.task.replace("_", " ") : g.status})`,
  })));
  if (state.groups.some((g) => g.name === wanted)) select.value = wanted;
  selectGroup();
}

function currentGroup() {
  return state.groups.find((g) => g.name === $("group").value) || null;
}

/** Offer the forms that fit the selected group; keep the shown form when the group still offers it. */
function selectGroup() {
  const group = currentGroup();
  const forms = group ? formsFor(group) : [];
  const note = $("no-form");
  note.hidden = true;
  if (group && forms.length === 0) {
    note.textContent = group.status === "loading"
      ? `Group "${group.name}" is still loading its model; the list refreshes itself until it is ready.`
      : group.status !== "ready"
        ? `Group "${group.name}" cannot serve (${group.status})${group.error ? `: ${group.error}` : "."}`
        : `The playground has no form for the task "${group.task}" of group "${group.name}".`;
    note.hidden = false;
  }
  const same = forms.length === state.forms.length && forms.every((f, i) => f === state.forms[i]);
  if (same && state.form && forms.includes(state.form)) return;
  state.forms = forms;
  const choice = $("form-choice");
  const options = $("form-choice-options");
  options.replaceChildren(...forms.map((form) => el("div", { class: "check" },
    el("input", { type: "radio", name: "form-choice", id: `choice-${form}`, value: form }),
    el("label", { for: `choice-${form}`, text: FORM_TITLES[form] }))));
  choice.hidden = forms.length < 2;
  const requested = new URLSearchParams(location.search).get("form");
  showForm(forms.includes(requested) ? requested : forms[0] || null);
}

function showForm(form) {
  state.form = form;
  for (const node of document.querySelectorAll(".task-form")) node.hidden = node.dataset.form !== form;
  const radio = form && document.getElementById(`choice-${form}`);
  if (radio) radio.checked = true;
  clearOutput();
  const group = currentGroup();
  const params = new URLSearchParams(location.search);
  if (group) params.set("group", group.name);
  if (form) params.set("form", form); else params.delete("form");
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

// ------------------------------------------------------------------------------------------------ requests

/** POST a JSON body; never throws: a failure comes back as ``call.error``. ``purpose`` titles its panel. */
async function post(path, body, purpose = "") {
  const payload = JSON.stringify(body);
  const call = { path, body, payload, purpose, status: 0, ms: 0, headers: null, data: undefined, error: null };
  const started = performance.now();
  try {
    const response = await fetch(path, {
      method: "POST", headers: { "content-type": "application/json" }, body: payload,
    });
    const text = await response.text();
    call.ms = performance.now() - started;
    call.status = response.status;
    call.headers = response.headers;
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (response.ok && data !== undefined) call.data = data;
    else if (data && data.error && data.error.message) call.error = data.error;
    else call.error = { type: `http_${response.status}`, message: text.trim().slice(0, 500) || response.statusText };
  } catch (err) {
    call.ms = performance.now() - started;
    call.error = { type: "network_error", message: `the server could not be reached (${err.message})` };
  }
  return call;
}

function lines(text) {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
}

class InputProblem extends Error {}

const RUNNERS = {
  async classify(group) {
    const text = $("classify-text").value;
    const pair = $("classify-pair").value;
    const input = pair.trim() !== "" ? [[text, pair]] : text;
    const first = (result) => (Array.isArray(input) ? result[0] : result);
    const body = { text: input, consumer_group: group.name };
    const calls = [await post("/classify", { ...body, return: "labels" }, "labels with probabilities")];
    if (calls[0].data && $("classify-raw").checked) calls.push(await post("/classify", body, "raw logits"));
    return {
      calls,
      render: () => {
        const parts = [el("h3", { text: "Labels" }),
          bars(first(calls[0].data.result).map((r) => ({ label: r.label, score: r.score })), "labels")];
        const raw = calls[1] && calls[1].data;
        if (raw) {
          parts.push(el("h3", { text: "Raw logits" }), logitsTable(first(raw.result), group.labels || []));
        }
        return parts;
      },
    };
  },

  async rerank(group) {
    const query = $("rerank-query").value;
    const documents = lines($("rerank-documents").value);
    if (documents.length === 0) throw new InputProblem("Enter at least one document, one per line.");
    const call = await post("/rerank", { query, documents, consumer_group: group.name });
    return {
      calls: [call],
      render: () => [bars(call.data.results.map((r) => ({ label: documents[r.index], score: r.relevance_score })),
        "ranking", true)],
    };
  },

  async zero_shot(group) {
    const candidates = $("zero_shot-labels").value.split(",").map((l) => l.trim()).filter((l) => l !== "");
    if (candidates.length === 0) throw new InputProblem("Enter at least one candidate label.");
    const body = { text: $("zero_shot-text").value, candidate_labels: candidates, consumer_group: group.name };
    const template = $("zero_shot-template").value;
    if (template !== DEFAULT_TEMPLATE) body.hypothesis_template = template;
    if ($("zero_shot-multi").checked) body.multi_label = true;
    const call = await post("/zero_shot", body);
    return {
      calls: [call],
      render: () => {
        const { labels, scores } = call.data.result;
        return [bars(labels.map((label, i) => ({ label, score: scores[i] })), "labels")];
      },
    };
  },

  async qa(group) {
    const question = $("qa-question").value;
    const context = $("qa-context").value;
    const topK = Number($("qa-top_k").value);
    if (!Number.isInteger(topK) || topK < 1) throw new InputProblem("Answers must be a whole number from 1 up.");
    const qa = { top_k: topK };
    if ($("qa-impossible").checked) qa.handle_impossible_answer = true;
    const call = await post("/classify", { text: [[question, context]], consumer_group: group.name, qa });
    return {
      calls: [call],
      render: () => {
        const answers = call.data.result[0];
        return [highlighted(context, answers[0]),
          bars(answers.map((a) => ({ label: a.answer === "" ? "(no answer)" : a.answer, score: a.score })),
            "answers")];
      },
    };
  },

  async embed(group) {
    const sentences = lines($("embed-sentences").value);
    if (sentences.length === 0) throw new InputProblem("Enter at least one sentence, one per line.");
    const call = await post("/embed", { text: sentences, consumer_group: group.name });
    return { calls: [call], render: () => [heatmap(sentences, call.data.result)] };
  },
};

async function submit(event) {
  event.preventDefault();
  const node = event.currentTarget; // currentTarget is null once the handler awaits
  const form = node.dataset.form;
  const group = currentGroup();
  if (state.busy || !group) return;
  state.busy = true;
  node.setAttribute("aria-busy", "true");
  clearOutput();
  $("output").hidden = false;
  $("busy").textContent = "Sending the request…";
  try {
    const { calls, render } = await RUNNERS[form](group);
    $("calls").replaceChildren(...calls.map(callPanel));
    const failed = calls.find((call) => call.error);
    if (failed) showBox($("error"), errorParts({ status: failed.status, error: failed.error, headers: failed.headers }));
    if (calls[0].data !== undefined) $("result").replaceChildren(...truncationNote(calls[0]), ...render());
  } catch (err) {
    const message = err instanceof InputProblem ? err.message : `The page failed to show the answer: ${err.message}`;
    showBox($("error"), [el("strong", { text: err instanceof InputProblem ? "Check the form" : "Page error" }),
      el("p", { text: message })]);
  } finally {
    state.busy = false;
    node.removeAttribute("aria-busy");
    $("busy").textContent = "";
  }
}

// ------------------------------------------------------------------------------------------------ results

function clearOutput() {
  $("output").hidden = true;
  $("error").hidden = true;
  $("error").replaceChildren();
  $("result").replaceChildren();
  $("calls").replaceChildren();
}

function showBox(box, parts) {
  box.replaceChildren(...parts);
  box.hidden = false;
}

function errorParts({ status, error, headers }) {
  const type = (error && error.type) || "error";
  const title = ERROR_TITLES[type] || type.replace(/_/g, " ");
  const parts = [el("strong", { class: "error-title", text: status ? `${title} (HTTP ${status})` : title }),
    el("p", { class: "error-message", text: (error && error.message) || "the server gave no message" })];
  const retry = headers && headers.get("retry-after");
  if (retry) parts.push(el("p", { text: `Retry after ${retry} s.` }));
  if (type === "not_found") parts.push(el("p", { text: "The list of groups may be out of date: press Refresh." }));
  if (error && error.request_id) parts.push(el("p", { class: "hint", text: `Request id: ${error.request_id}` }));
  return parts;
}

function truncationNote(call) {
  const truncated = call.headers && call.headers.get("x-assay-truncated");
  return truncated
    ? [el("p", { class: "note", text: "The input was cut to the model's maximum length (X-Assay-Truncated)." })]
    : [];
}

/** Four decimals, or three significant digits for scores too small to show that way. */
function formatScore(value) {
  const number = Number(value);
  return number === 0 || Math.abs(number) >= 0.001 ? number.toFixed(4) : number.toExponential(2);
}

/** Horizontal bars, one per item, in the order given (the server's order: best first). */
function bars(items, kind, wide = false) {
  return el("ol", { class: `bars bars-${kind}${wide ? " bars-wide" : ""}` }, ...items.map((item) => {
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(1, item.score)) * 100}%`;
    return el("li", { class: "bar" },
      el("span", { class: "bar-label", text: item.label }),
      el("span", { class: "bar-track", "aria-hidden": "true" }, fill),
      el("span", { class: "bar-value", "data-value": String(item.score), text: formatScore(item.score) }));
  }));
}

function logitsTable(row, labels) {
  return el("table", { class: "logits" },
    el("caption", { class: "visually-hidden", text: "Raw logits per label" }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Label" }), el("th", { scope: "col", text: "Logit" }))),
    el("tbody", {}, ...row.map((value, i) => el("tr", {},
      el("th", { scope: "row", text: labels[i] || `LABEL_${i}` }),
      el("td", { class: "logit", "data-value": String(value), text: formatScore(value) })))));
}

/** The context with the answer marked. Offsets count code points (Python's), not UTF-16 units. */
function highlighted(context, answer) {
  const chars = Array.from(context);
  if (!answer || answer.answer === "" || answer.end <= answer.start) {
    return el("p", { class: "context" }, context,
      el("span", { class: "note", text: " No answer: the model's null score beat every span." }));
  }
  return el("p", { class: "context" },
    chars.slice(0, answer.start).join(""),
    el("mark", { text: chars.slice(answer.start, answer.end).join("") }),
    chars.slice(answer.end).join(""),
    el("span", { class: "answer-score", text: ` (score ${formatScore(answer.score)})` }));
}

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/** The cosine-similarity matrix of the sentences' embeddings as a heat map (numbers in every cell). */
function heatmap(sentences, vectors) {
  const short = (s) => (s.length > 40 ? `${s.slice(0, 39)}…` : s);
  const head = el("tr", {}, el("td", {}), ...sentences.map((s, j) => el("th", { scope: "col", title: s, text: `${j + 1}` })));
  const rows = vectors.map((a, i) => el("tr", {},
    el("th", { scope: "row", title: sentences[i], text: `${i + 1}. ${short(sentences[i])}` }),
    ...vectors.map((b) => {
      const value = cosine(a, b);
      const cell = el("td", { class: "heat", "data-value": String(value), text: value.toFixed(2) });
      const strength = Math.max(0, Math.min(1, Math.abs(value)));
      cell.style.backgroundColor = `hsl(${value < 0 ? 8 : 212}, 75%, ${Math.round(97 - 55 * strength)}%)`;
      cell.style.color = strength > 0.6 ? "#fff" : "#111";
      return cell;
    })));
  return el("div", { class: "heatmap-scroll" }, el("table", { class: "heatmap" },
    el("caption", { text: "Cosine similarity of every pair of sentences" }), el("thead", {}, head),
    el("tbody", {}, ...rows)));
}

// ------------------------------------------------------------------------------------------------ snippets

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** A JSON value as a Python literal (JSON string escapes are valid in Python strings). */
function python(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(python).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${python(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

function curlCommand(call) {
  return `curl -s ${location.origin}${call.path} -H 'content-type: application/json' -d ${shellQuote(call.payload)}`;
}

/** takeoff-client's classify() sends exactly {text, consumer_group} to /classify: other requests need httpx. */
function pythonCall(call) {
  const takeoff = call.path === "/classify" && Object.keys(call.body).every((k) => k === "text" || k === "consumer_group");
  if (takeoff) {
    const port = location.port || (location.protocol === "https:" ? "443" : "80");
    return {
      title: "Python (takeoff-client)",
      code: "from takeoff_client import TakeoffClient\n\n" +
        `client = TakeoffClient(base_url=${JSON.stringify(`${location.protocol}//${location.hostname}`)}, port=${port})\n` +
        `client.classify(${python(call.body.text)}, consumer_group=${JSON.stringify(call.body.consumer_group)})`,
    };
  }
  const why = call.path === "/classify"
    ? "takeoff-client's classify() sends only text and consumer_group, not " +
      `${Object.keys(call.body).filter((k) => k !== "text" && k !== "consumer_group").map((k) => `"${k}"`).join(", ")}`
    : call.path === "/embed"
      ? "takeoff-client's embed() calls the OpenAI-compatible port, not /embed"
      : `takeoff-client has no call for ${call.path}`;
  return {
    title: "Python (httpx)",
    code: `import httpx\n\n# ${why}; httpx (installed with takeoff-client) sends the same request.\n` +
      `httpx.post(${JSON.stringify(location.origin + call.path)}, json=${python(call.body)}, timeout=60).json()`,
  };
}

function snippet(kind, title, code) {
  const codeNode = el("code", { "data-snippet": kind, text: code });
  const button = el("button", { type: "button", class: "copy", "aria-label": `Copy the ${title} snippet`, text: "Copy" });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(codeNode);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
  return el("div", { class: "snippet" },
    el("div", { class: "snippet-head" }, el("span", { text: title }), button),
    el("pre", {}, codeNode));
}

function callPanel(call) {
  const outcome = call.status ? `HTTP ${call.status}` : "no answer";
  const py = pythonCall(call);
  return el("article", { class: "call" },
    el("h3", { text: `POST ${call.path}${call.purpose ? `: ${call.purpose}` : ""}` }),
    el("p", { class: "latency", "data-ms": call.ms.toFixed(1) }, "Latency: ",
      el("strong", { text: `${Math.round(call.ms)} ms` }), ` (${outcome}, measured in this browser)`),
    snippet("curl", "curl", curlCommand(call)),
    snippet("python", py.title, py.code));
}

// ------------------------------------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  $("refresh-groups").addEventListener("click", loadGroups);
  $("group").addEventListener("change", () => {
    state.form = null;
    selectGroup();
  });
  $("form-choice-options").addEventListener("change", (event) => showForm(event.target.value));
  for (const form of document.querySelectorAll(".task-form")) form.addEventListener("submit", submit);
  loadGroups();
});
