// One upload or removal job of the Documents panel, drawn from GET /jobs/{id}: its state, a
// progress bar (<progress>, named and with a value text for screen readers) and a line per file
// with the API's own error message. File names and errors go in as text only (el()).
import { el } from "./common.js";

const STATE_TEXT = {
  queued: "Waiting for the job before it…",
  running: "Indexing…",
  done: "Done",
  failed: "Failed",
};
// The page calls chunks "passages" everywhere (the header, the list, the answers).
const UNIT_WORDS = { chunks: "passages" };
const FILE_STATUS_TEXT = {
  uploading: "uploading", // ours, until the server has answered the upload
  queued: "waiting",
  running: "indexing",
};

/** One upload or removal: its state, a progress bar and a line per file. */
export class JobView {
  /** `doneWord`: what a finished file is ("added" for an upload, "removed" for a removal). */
  constructor(title, doneWord) {
    this.title = title;
    this.doneWord = doneWord;
    this.node = el("li", "job running");
    const head = el("div", "job-head");
    this.heading = el("span", "job-title", title);
    this.state = el("span", "job-state", "Sending…");
    this.dismiss = el("button", "icon-btn small", "✕");
    this.dismiss.type = "button";
    this.dismiss.setAttribute("aria-label", `Dismiss: ${title}`);
    this.dismiss.hidden = true;
    this.dismiss.addEventListener("click", () => this.node.remove());
    head.append(this.heading, this.state, this.dismiss);
    this.bar = el("progress", "job-bar");
    this.bar.setAttribute("aria-label", title);
    this.bar.setAttribute("aria-valuetext", "starting");
    this.files = el("ul", "job-files");
    this.node.append(head, this.bar, this.files);
  }

  /** Draw the job as GET /jobs/{id} describes it. */
  update(job) {
    const { done = 0, total = 0, unit = "" } = job.progress || {};
    let state = STATE_TEXT[job.state] || String(job.state);
    if (total > 0) {
      this.bar.max = total;
      this.bar.value = Math.min(done, total);
      const word = UNIT_WORDS[unit] ?? unit;
      const counted = `${done} of ${total}${word ? ` ${word}` : ""}`;
      this.bar.setAttribute("aria-valuetext", counted);
      // Scanned pages are read by OCR (seconds a page) before their passages are indexed.
      const doing = unit === "pages" ? "Reading scanned pages" : "Indexing";
      if (job.state === "running") state = `${doing}: ${counted}`;
    } else if (job.state === "done" || job.state === "failed") {
      this.bar.max = 1;
      this.bar.value = 1;
      this.bar.setAttribute("aria-valuetext", state);
    } else {
      this.bar.removeAttribute("value"); // indeterminate until the server knows a total
      this.bar.setAttribute("aria-valuetext", state);
    }
    this.state.textContent = state;
    if (Array.isArray(job.files)) this.showFiles(job.files);
    if (job.state === "done" || job.state === "failed") this.finish(job.state);
  }

  showFiles(files) {
    this.files.replaceChildren();
    for (const file of files) {
      const failed = Boolean(file.error) || file.status === "failed";
      const row = el("li", failed ? "job-file failed" : "job-file");
      const ours = { done: this.doneWord, failed: `not ${this.doneWord}` };
      const status = ours[file.status] || FILE_STATUS_TEXT[file.status] || String(file.status);
      row.append(el("span", "job-file-name", file.name), el("span", "job-file-status", status));
      if (file.error) row.append(el("p", "job-file-error", file.error));
      this.files.append(row);
    }
  }

  /** A failure before or outside the job (the upload refused, the server gone). */
  fail(message) {
    this.state.textContent = STATE_TEXT.failed;
    this.node.append(el("p", "job-file-error", message));
    this.finish("failed");
  }

  finish(state) {
    if (!this.node.classList.contains("running")) return;
    this.node.classList.remove("running");
    this.node.classList.add(state === "failed" ? "failed" : "done");
    if (!this.bar.hasAttribute("value")) {
      this.bar.max = 1;
      this.bar.value = 1;
    }
    this.dismiss.hidden = false;
  }

  /** What a screen reader hears when the job ends. */
  summary(job) {
    const files = Array.isArray(job.files) ? job.files : [];
    const bad = files.filter((f) => f.error);
    if (job.state === "failed" && !bad.length) return `${this.title}: failed.`;
    const parts = [`${this.title}: ${job.state === "failed" ? "failed" : "done"}.`];
    for (const f of bad) parts.push(`${f.name}: ${f.error}`);
    return parts.join(" ");
  }
}
