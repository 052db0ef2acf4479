// Shared by the chat page and the document view: API calls with the optional API key,
// server-sent-event parsing, and DOM helpers that only ever set text (never HTML).

const KEY_STORAGE = "qa.apiKey";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Create an element with an optional class and text (textContent: data is never markup). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** The `detail` of an error response, or a generic message. */
export async function errorDetail(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch (_) {
    /* not JSON */
  }
  return `The server answered ${response.status} ${response.statusText}.`;
}

function askForKey(message) {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const form = document.getElementById("key-form");
  const cancel = document.getElementById("key-cancel");
  document.getElementById("key-message").textContent = message;
  input.value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      done(input.value.trim() || null);
    };
    const onCancel = (event) => {
      event.preventDefault();
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
}

/** fetch() with the stored API key; on 401 ask the user for a key (once) and retry. */
export async function apiFetch(url, options = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { ...(options.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(url, { ...options, headers });
    } catch (err) {
      throw new ApiError(
        "Cannot reach the server. Check that `qa serve` is running, then try again.",
        0,
      );
    }
    if (response.status !== 401) return response;
    const detail = await errorDetail(response);
    const entered = await askForKey(key ? `That key was refused: ${detail}` : detail);
    if (!entered) throw new ApiError(`${detail} (no API key was given)`, 401);
    sessionStorage.setItem(KEY_STORAGE, entered);
  }
}

/** Read a text/event-stream body, calling onEvent(name, parsedJson) per event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

/** /view/<doc id>?start=&end= (each path segment encoded; ids may hold slashes). */
export function viewUrl(docId, start, end) {
  const path = docId.split("/").map(encodeURIComponent).join("/");
  const query = start !== undefined && end !== undefined ? `?start=${start}&end=${end}` : "";
  return `/view/${path}${query}`;
}

/** The same path under /documents/ (the JSON API). */
export function documentUrl(docId, start, end) {
  return viewUrl(docId, start, end).replace(/^\/view\//, "/documents/");
}

/** Append `text` to `parent` with the given [start, end) ranges wrapped in <mark>. */
export function appendMarked(parent, text, ranges) {
  const spans = ranges
    .map(([a, b]) => [Math.max(0, a), Math.min(text.length, b)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let pos = 0;
  const marks = [];
  for (const [a, b] of spans) {
    const from = Math.max(a, pos);
    if (b <= from) continue;
    parent.append(text.slice(pos, from));
    const mark = el("mark", null, text.slice(from, b));
    parent.append(mark);
    marks.push(mark);
    pos = b;
  }
  parent.append(text.slice(pos));
  return marks;
}
