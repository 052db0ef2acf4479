// Feedback under an answer: helpful / not helpful, what was wrong, an optional correction, and
// evidence picked from the source panel. Each choice is saved at once (POST /feedback; a new
// choice replaces the earlier record). Everything shown is set as text, never as markup.
import { apiFetch, el, errorDetail } from "./common.js";

const KINDS = [
  ["wrong_answer", "Wrong answer"],
  ["should_abstain", "Should have said it is not in the documents"],
  ["should_answer", "It is in the documents (should have answered)"],
  ["wrong_source", "Wrong or missing source"],
];
let counter = 0;

export class FeedbackControl {
  constructor(answer) {
    this.answerId = answer.answer_id;
    this.rating = null;
    this.kind = null;
    this.correction = null;
    this.evidence = null;
    const id = `fb-${++counter}`;

    this.node = el("div", "feedback");
    this.node.setAttribute("role", "group");
    this.node.setAttribute("aria-label", "Rate this answer");
    const row = el("div", "fb-row");
    row.append(el("span", "fb-label", "Was this helpful?"));
    this.up = this.ratingButton("up", "Helpful");
    this.down = this.ratingButton("down", "Not helpful");
    this.status = el("span", "fb-status");
    this.status.setAttribute("role", "status");
    row.append(this.up, this.down, this.status);

    this.more = el("fieldset", "fb-more");
    this.more.hidden = true;
    this.more.append(el("legend", null, "What was wrong?"));
    this.radios = KINDS.map(([value, label]) => {
      const input = el("input");
      input.type = "radio";
      input.name = `${id}-kind`;
      input.value = value;
      input.addEventListener("change", () => {
        this.kind = value;
        this.save();
      });
      const wrap = el("label", "fb-kind");
      wrap.append(input, el("span", null, label));
      this.more.append(wrap);
      return input;
    });
    const label = el("label", "fb-correction-label", "Correction (optional)");
    label.htmlFor = `${id}-correction`;
    this.text = el("textarea", "fb-correction");
    this.text.id = `${id}-correction`;
    this.text.rows = 2;
    this.text.maxLength = 4000;
    this.text.placeholder = "What the right answer is, in your words";
    const saveCorrection = el("button", "btn ghost fb-save", "Save correction");
    saveCorrection.type = "button";
    saveCorrection.addEventListener("click", () => {
      this.correction = this.text.value.trim() || null;
      this.save();
    });
    this.more.append(label, this.text, saveCorrection);

    this.evidenceNote = el("p", "fb-evidence");
    this.evidenceNote.append(
      "To point at the right evidence: open a source, select the words, and choose ",
      el("q", null, "Use as the answer evidence"),
      ".",
    );
    this.evidenceNote.hidden = true;
    this.node.append(row, this.more, this.evidenceNote);
  }

  ratingButton(rating, label) {
    const button = el("button", "fb-btn", label);
    button.type = "button";
    button.dataset.rating = rating;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      this.rating = rating;
      if (rating === "up") {
        this.kind = null;
        for (const r of this.radios) r.checked = false;
      }
      this.more.hidden = rating !== "down";
      this.evidenceNote.hidden = rating !== "down" && !this.evidence;
      this.save();
    });
    return button;
  }

  /** Evidence picked in the source panel: saved now if the answer is rated, else with the rating. */
  setEvidence(evidence) {
    this.evidence = evidence;
    this.evidenceNote.hidden = false;
    this.evidenceNote.replaceChildren(
      el("span", null, "Evidence: "),
      el("q", null, evidence.text),
    );
    if (this.rating) this.save();
    else this.show("Evidence chosen; rate the answer to save it.", "");
  }

  async save() {
    for (const b of [this.up, this.down]) {
      b.setAttribute("aria-pressed", String(b.dataset.rating === this.rating));
    }
    const body = {
      answer_id: this.answerId,
      rating: this.rating,
      kind: this.rating === "down" ? this.kind : null,
      correction: this.correction,
      evidence: this.evidence
        ? { doc_id: this.evidence.doc_id, start: this.evidence.start, end: this.evidence.end }
        : null,
    };
    this.node.dataset.saved = "pending";
    this.show("Saving…", "");
    try {
      const res = await apiFetch("/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(await errorDetail(res));
      this.feedbackId = (await res.json()).feedback_id;
      this.node.dataset.saved = "true";
      const what = this.rating === "up" ? "helpful" : "not helpful";
      const said = this.correction ? ` with your correction “${this.correction}”` : "";
      this.show(`Saved as ${what}${said}. You can change it.`, "saved");
    } catch (err) {
      this.node.dataset.saved = "false";
      this.show(`Not saved: ${err.message || err}`, "error");
    }
  }

  show(text, state) {
    this.status.textContent = text; // text only: a correction can hold anything
    this.status.className = `fb-status ${state}`;
  }
}

/** The source panel's "Use as the answer evidence": the words selected in `quote` (the
 * passage's blockquote, whose text starts at document offset passage.start). */
export function evidenceButton(control, passage, quote) {
  const button = el("button", "btn ghost use-evidence", "Use as the answer evidence");
  button.type = "button";
  const note = el("span", "fb-status");
  note.setAttribute("role", "status");
  button.addEventListener("click", () => {
    const span = selectedSpan(quote);
    if (!span) {
      note.textContent = "Select the words that answer the question in the passage first.";
      return;
    }
    control.setEvidence({
      doc_id: passage.doc_id,
      start: passage.start + span.start,
      end: passage.start + span.end,
      text: passage.text.slice(span.start, span.end),
    });
    note.textContent = "Set as this answer's evidence.";
  });
  const wrap = el("div", "evidence-pick");
  wrap.append(button, note);
  return wrap;
}

/** The selection's [start, end) in `container`'s text, or null when nothing in it is selected. */
function selectedSpan(container) {
  const selection = window.getSelection();
  if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
  const range = selection.getRangeAt(0);
  if (!container.contains(range.startContainer) || !container.contains(range.endContainer)) {
    return null;
  }
  const before = document.createRange();
  before.setStart(container, 0);
  before.setEnd(range.startContainer, range.startOffset);
  const start = before.toString().length;
  const end = start + range.toString().length;
  return end > start ? { start, end } : null;
}
