// The chat page: a conversation with streamed, cited answers and a source panel.
// Every piece of corpus or answer text goes into the DOM through textContent (see el()).
import {
  ApiError, apiFetch, appendMarked, el, errorDetail, readEvents, viewUrl,
} from "./common.js";
import { DocumentsPanel } from "./documents.js";
import { FeedbackControl, evidenceButton } from "./feedback.js";

const $ = (id) => document.getElementById(id);
const HISTORY_TURNS = 12; // earlier turns sent with a follow-up (keeps the body small)

const ui = {
  conversation: $("conversation"),
  welcome: $("welcome"),
  main: $("main"),
  form: $("composer"),
  question: $("question"),
  send: $("send"),
  answerer: $("answerer"),
  status: $("status"),
  statusText: $("status-text"),
  panel: $("panel"),
  panelTitle: $("panel-title"),
  panelKicker: $("panel-kicker"),
  panelBody: $("panel-body"),
  scrim: $("scrim"),
};
let history = [];
let busy = false;
let lastCite = null;

// ---------- status and answerers ----------

async function pollReady() {
  let res;
  try {
    res = await fetch("/readyz");
  } catch (_) {
    setStatus("down", "Server unreachable. Retrying…");
    setTimeout(pollReady, 3000);
    return;
  }
  if (res.ok) {
    showCounts(await res.json());
    loadAnswerers();
  } else {
    setStatus("loading", await errorDetail(res));
    setTimeout(pollReady, 2000);
  }
}

function showCounts(info) {
  const docs = `${info.documents} document${info.documents === 1 ? "" : "s"}`;
  setStatus("ready", `${docs} · ${info.chunks} passages · ${info.model}`);
}

/** After an upload or a removal: the header's counts from /readyz again. */
async function refreshCounts() {
  try {
    const res = await fetch("/readyz");
    if (res.ok) showCounts(await res.json());
  } catch (_) {
    /* the next job or reload tries again */
  }
}

function setStatus(kind, text) {
  ui.status.className = `status ${kind}`;
  ui.statusText.textContent = text;
}

async function loadAnswerers() {
  try {
    const res = await apiFetch("/answerers");
    if (!res.ok) return;
    const { answerers } = await res.json();
    ui.answerer.replaceChildren();
    for (const a of answerers) {
      const option = el("option", null, a.default ? `${a.name} (default)` : a.name);
      option.value = a.default ? "" : a.name;
      option.selected = a.default; // the list is sorted: the default need not come first
      option.title = a.description;
      ui.answerer.append(option);
    }
  } catch (_) {
    /* the picker keeps "default" */
  }
}

// ---------- composing ----------

function autosize() {
  ui.question.style.height = "auto";
  ui.question.style.height = `${Math.min(ui.question.scrollHeight, 200)}px`;
}

function setBusy(value) {
  busy = value;
  ui.send.disabled = value;
  ui.conversation.setAttribute("aria-busy", String(value));
}

function scrollToEnd() {
  ui.main.scrollTop = ui.main.scrollHeight;
}

function newConversation() {
  if (busy) return;
  history = [];
  ui.conversation.replaceChildren();
  ui.welcome.hidden = false;
  closePanel();
  ui.question.value = "";
  autosize();
  ui.question.focus();
}

// ---------- one answer ----------

const CLOSEST_LABEL = "Closest passage found — it may not answer your question";

/** "answered", "closest" or "abstained": the `abstained` flag wins, as on the server. */
function answerKind(answer) {
  if (answer.abstained) return "abstained";
  return answer.kind === "closest" ? "closest" : "answered";
}

class AnswerView {
  constructor() {
    this.node = el("article", "msg bot streaming");
    this.node.setAttribute("aria-label", "Answer");
    this.card = el("div", "card");
    this.progress = el("p", "progress");
    this.progress.append(el("span", "spinner"), el("span", null, "Searching the documents…"));
    this.text = el("p", "answer-text");
    this.card.append(this.progress, this.text);
    this.node.append(this.card);
    this.passages = [];
    this.citations = [];
    this.raw = "";
  }

  setPassages(passages) {
    this.passages = passages;
    this.progress.lastChild.textContent = `Reading ${passages.length} passages…`;
  }

  appendDelta(text) {
    this.progress.hidden = true;
    this.raw += text;
    this.renderText(this.raw);
  }

  renderText(text) {
    this.text.replaceChildren();
    const re = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
    let pos = 0;
    for (const m of text.matchAll(re)) {
      this.text.append(text.slice(pos, m.index));
      for (const n of m[1].split(",").map((s) => Number(s.trim()))) {
        this.text.append(this.citeButton(n));
      }
      pos = m.index + m[0].length;
    }
    this.text.append(text.slice(pos));
  }

  citeButton(n) {
    const passage = this.passages.find((p) => p.n === n);
    const cited = this.citations.filter((c) => c.n === n);
    const unsupported = cited.length > 0 && cited.every((c) => !c.supported);
    const button = el("button", unsupported ? "cite unsupported" : "cite", String(n));
    button.type = "button";
    button.dataset.n = String(n);
    const title = passage ? passage.title : "unknown passage";
    button.setAttribute(
      "aria-label",
      `Source ${n}: ${title}${unsupported ? " (not verified to support this claim)" : ""}`,
    );
    button.title = unsupported ? "Not verified to support this claim" : `Show source ${n}`;
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", "panel");
    button.addEventListener("click", () => openPanel(this, n, button));
    return button;
  }

  finish(answer, clientMs) {
    this.passages = answer.passages;
    this.citations = answer.citations;
    this.node.classList.remove("streaming");
    this.progress.hidden = true;
    const kind = answerKind(answer);
    if (kind === "abstained") {
      this.node.classList.add("abstained");
      this.card.prepend(el("span", "badge", "Not found in the documents"));
    } else if (kind === "closest") {
      // Said in words, not by colour alone: this passage may not answer the question.
      this.node.classList.add("closest");
      this.node.setAttribute("aria-label", "Closest passage found");
      this.card.prepend(el("span", "badge", CLOSEST_LABEL));
    }
    this.renderText(answer.answer);
    if (answer.abstained && answer.abstain_reason) {
      this.card.append(el("p", "reason", answer.abstain_reason));
    }
    if (answer.short_answer && kind === "answered") {
      const short = el("p", "short-answer");
      short.append(el("span", null, "Short answer"), el("strong", null, answer.short_answer));
      this.card.append(short);
    }
    if (answer.citations.length) this.card.append(this.sourcesList(answer));
    if (answer.passages.length) this.card.append(this.passagesList(answer));
    this.card.append(this.meta(answer, clientMs));
    if (answer.answer_id) {
      this.feedback = new FeedbackControl(answer);
      this.card.append(this.feedback.node);
    }
  }

  sourcesList(answer) {
    const section = el("section", "sources");
    section.append(el("h3", null, "Sources"));
    const list = el("ol", "source-list");
    const seen = new Set();
    for (const c of answer.citations) {
      if (seen.has(c.n)) continue;
      seen.add(c.n);
      const passage = answer.passages.find((p) => p.n === c.n);
      const quotes = answer.citations.filter((x) => x.n === c.n);
      const supported = quotes.some((x) => x.supported);
      list.append(this.sourceRow(c.n, c.title, c.page, passage, quotes[0].quote, supported));
    }
    section.append(list);
    return section;
  }

  passagesList(answer) {
    const details = el("details", "all-passages");
    details.append(el("summary", null, `All ${answer.passages.length} retrieved passages`));
    const list = el("ol", "source-list");
    for (const p of answer.passages) {
      list.append(this.sourceRow(p.n, p.title, p.page, p, p.text, true));
    }
    details.append(list);
    return details;
  }

  sourceRow(n, title, page, passage, snippet, supported) {
    const item = el("li");
    const button = el("button", "source");
    button.type = "button";
    button.setAttribute("aria-label", `Show source ${n}: ${title}`);
    const badge = el("span", supported ? "cite" : "cite unsupported", String(n));
    badge.setAttribute("aria-hidden", "true");
    const body = el("span");
    const head = el("span", "source-title", title);
    if (!supported) head.append(el("span", "tag", "not verified"));
    body.append(head, el("span", "source-quote", snippet));
    const meta = [];
    if (page !== null && page !== undefined) meta.push(`p. ${page}`);
    if (passage) meta.push(`score ${passage.score.toFixed(2)}`);
    button.append(badge, body, el("span", "source-meta", meta.join(" · ")));
    button.addEventListener("click", () => openPanel(this, n, button));
    item.append(button);
    return item;
  }

  meta(answer, clientMs) {
    const meta = el("footer", "meta");
    const server = answer.timings_ms.total;
    meta.append(el("span", "pill", `Answered by ${answer.answerer}`));
    if (!answer.abstained && typeof answer.confidence === "number") {
      const percent = Math.round(answer.confidence * 100);
      const confidence = el("span", "confidence", `${percent}% confident`);
      confidence.title = "How sure the answerer is that this is right";
      meta.append(confidence);
    }
    const took = server !== undefined ? `${Math.round(server)} ms` : "";
    meta.append(el("span", null, `${took} on the server · ${Math.round(clientMs)} ms in total`));
    if (answer.standalone_question && answer.standalone_question !== answer.question) {
      meta.append(el("span", null, `Searched for: “${answer.standalone_question}”`));
    }
    return meta;
  }

  fail(message, status) {
    this.node.classList.remove("streaming");
    this.node.classList.add("error");
    this.node.setAttribute("role", "alert");
    this.card.replaceChildren(
      el("span", "badge", status ? `Error ${status}` : "Error"),
      el("p", "answer-text", message),
    );
  }
}

// ---------- side panels: the source panel or the Documents panel, one at a time ----------

function showDrawer() {
  document.body.classList.add("panel-open");
  // Wide screens keep the conversation usable beside the panel: no scrim.
  ui.scrim.hidden = window.matchMedia("(min-width: 1100px)").matches;
}

function hideDrawer() {
  document.body.classList.remove("panel-open");
  ui.scrim.hidden = true;
}

const docs = new DocumentsPanel({
  show: () => {
    closePanel({ restoreFocus: false });
    showDrawer();
  },
  hide: hideDrawer,
  changed: refreshCounts,
});

// ---------- the source panel ----------

function openPanel(view, n, trigger) {
  const passage = view.passages.find((p) => p.n === n);
  if (!passage) return;
  const quotes = view.citations.filter((c) => c.n === n && c.doc_id === passage.doc_id);
  ui.panelKicker.textContent = `Source [${n}]`;
  ui.panelTitle.textContent = passage.title;
  const body = ui.panelBody;
  body.replaceChildren();
  const meta = [`score ${passage.score.toFixed(3)}`, `chars ${passage.start}–${passage.end}`];
  if (passage.page !== null && passage.page !== undefined) meta.unshift(`page ${passage.page}`);
  $("panel-meta").textContent = meta.join(" · ");
  if (quotes.length && quotes.every((c) => !c.supported)) {
    body.append(el("p", "notice warn", "This citation was not verified to support the claim."));
  }
  const text = el("blockquote", "passage");
  const marks = appendMarked(
    text,
    passage.text,
    quotes.map((c) => [c.start - passage.start, c.end - passage.start]),
  );
  body.append(text);
  const span = quotes[0] || passage;
  const link = el("a", "open-doc", "Open the whole document at this passage →");
  link.href = viewUrl(passage.doc_id, span.start, span.end);
  link.target = "_blank";
  $("panel-foot").replaceChildren(link);
  if (view.feedback) $("panel-foot").append(evidenceButton(view.feedback, passage, text));

  if (lastCite) lastCite.setAttribute("aria-expanded", "false");
  lastCite = trigger;
  trigger.setAttribute("aria-expanded", "true");
  docs.close({ restoreFocus: false });
  ui.panel.hidden = false;
  showDrawer();
  ui.panel.focus();
  if (marks.length) marks[0].scrollIntoView({ block: "center" });
}

function closePanel({ restoreFocus = true } = {}) {
  if (ui.panel.hidden) return;
  ui.panel.hidden = true;
  hideDrawer();
  if (lastCite) {
    lastCite.setAttribute("aria-expanded", "false");
    if (restoreFocus && lastCite.isConnected) lastCite.focus();
  }
}

// ---------- asking ----------

async function ask() {
  const question = ui.question.value;
  if (busy || !question.trim()) return;
  setBusy(true);
  ui.question.value = "";
  autosize();
  ui.welcome.hidden = true;
  const mine = el("div", "msg user");
  mine.append(el("div", "bubble", question));
  const view = new AnswerView();
  ui.conversation.append(mine, view.node);
  scrollToEnd();

  const body = { question, history: history.slice(-HISTORY_TURNS) };
  if (ui.answerer.value) body.answerer = ui.answerer.value;
  const started = performance.now();
  try {
    const res = await apiFetch("/ask/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
    let final = null;
    await readEvents(res, (event, data) => {
      if (event === "passages") view.setPassages(data);
      else if (event === "delta") view.appendDelta(data.text);
      else if (event === "answer") final = data;
      else if (event === "error") throw new ApiError(data.detail, data.status);
      scrollToEnd();
    });
    if (!final) throw new ApiError("The answer stopped before it was complete. Try again.", 0);
    view.finish(final, performance.now() - started);
    history.push({ role: "user", content: question }, { role: "assistant", content: final.answer });
  } catch (err) {
    view.fail(err.message || String(err), err.status);
    // Keep what the user typed, so a retry is one key press.
    if (!ui.question.value.trim()) ui.question.value = question;
    autosize();
  } finally {
    setBusy(false);
    scrollToEnd();
    ui.question.focus();
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  ask();
});
ui.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ask();
  }
});
ui.question.addEventListener("input", autosize);
$("new-chat").addEventListener("click", newConversation);
$("panel-close").addEventListener("click", () => closePanel());
ui.scrim.addEventListener("click", () => {
  closePanel();
  docs.close();
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  closePanel();
  docs.close();
});

pollReady();
ui.question.focus();
