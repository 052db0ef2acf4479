// The chat page's Documents panel: what is indexed (GET /documents), adding files (a file picker
// or a drop) and removing one (after an in-page confirmation). Each upload or removal is a job
// on the server, followed at GET /jobs/{id} until it is done. Server strings (file names, titles,
// errors) go into the DOM only as text (el() sets textContent).
import { ApiError, apiFetch, documentUrl, el, errorDetail, viewUrl } from "./common.js";
import { JobView } from "./jobs.js";

const $ = (id) => document.getElementById(id);
const FIRST_POLL_MS = 250;
const MAX_POLL_MS = 1500; // a long ingest is polled at this pace, not faster
const LOST_POLLS = 10; // consecutive unreachable polls before a job is reported lost

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** 1536 -> "1.5 KB". */
function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The API's `added` (ISO 8601 text) as a Date, or null when absent or unreadable. */
function addedDate(added) {
  if (typeof added !== "string" || !added) return null;
  const date = new Date(added);
  return Number.isNaN(date.getTime()) ? null : date;
}

const DATE_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export class DocumentsPanel {
  /**
   * hooks.show() / hooks.hide(): the page's drawer layout (one side panel at a time);
   * hooks.changed(): the index changed (the header's counts are stale).
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.aside = $("docs");
    this.toggle = $("docs-toggle");
    this.busy = $("docs-busy");
    this.heading = $("docs-title");
    this.input = $("file-input");
    this.zone = $("dropzone");
    this.jobs = $("jobs");
    this.list = $("doc-list");
    this.count = $("doc-count");
    this.error = $("docs-error");
    this.live = $("docs-live");
    this.active = 0;
    this.removing = new Set(); // doc ids whose removal job has not ended
    // False when the server takes no uploads or deletes here (the panel says why instead).
    this.writable = this.aside.dataset.writable === "true";

    this.toggle.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
    $("docs-close").addEventListener("click", () => this.close());
    if (this.writable) {
      this.input.addEventListener("change", () => {
        const files = [...this.input.files];
        this.input.value = ""; // choosing the same file again is a new upload
        this.upload(files);
      });
    }
    this.listenForDrops();
  }

  isOpen() {
    return !this.aside.hidden;
  }

  open() {
    if (!this.isOpen()) {
      this.hooks.show();
      this.aside.hidden = false;
      this.toggle.setAttribute("aria-expanded", "true");
    }
    this.heading.focus();
    // `qa index` in another terminal may have changed the index since the last look.
    this.refresh();
    this.hooks.changed();
  }

  close({ restoreFocus = true } = {}) {
    if (!this.isOpen()) return;
    this.aside.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    this.hooks.hide();
    if (restoreFocus) this.toggle.focus();
  }

  announce(text) {
    // Cleared first, so the same sentence twice is read twice.
    this.live.textContent = "";
    setTimeout(() => {
      this.live.textContent = text;
    }, 50);
  }

  // ---------- the list ----------

  async refresh() {
    this.list.setAttribute("aria-busy", "true");
    try {
      const res = await apiFetch("/documents");
      if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
      const { documents } = await res.json();
      this.render(documents);
      this.error.hidden = true;
    } catch (err) {
      this.error.textContent = `Cannot list the documents: ${err.message || err}`;
      this.error.hidden = false;
    } finally {
      this.list.setAttribute("aria-busy", "false");
    }
  }

  render(documents) {
    // A refresh (another job ending) must not drop the keyboard user's place in the list.
    const focused = document.activeElement?.closest?.(".doc-row")?.dataset.docId;
    this.count.textContent = `(${documents.length})`;
    this.list.replaceChildren();
    if (!documents.length) {
      this.list.append(el("li", "empty muted", "No documents yet: add some above."));
    }
    for (const doc of documents) this.list.append(this.row(doc));
    if (focused === undefined) return;
    const row = [...this.list.children].find((r) => r.dataset.docId === focused);
    (row?.querySelector("button:enabled, a") || this.heading).focus();
  }

  row(doc) {
    const title = doc.title || doc.doc_id;
    const item = el("li", "doc-row");
    item.dataset.docId = doc.doc_id;
    const info = el("div", "doc-info");
    const link = el("a", "doc-link", title);
    link.href = viewUrl(doc.doc_id);
    link.target = "_blank";
    const meta = el("p", "doc-row-meta");
    const facts = [];
    if (doc.type) facts.push(String(doc.type).toUpperCase());
    if (typeof doc.pages === "number") facts.push(plural(doc.pages, "page"));
    if (typeof doc.chunks === "number") facts.push(plural(doc.chunks, "passage"));
    if (typeof doc.bytes === "number") facts.push(formatBytes(doc.bytes));
    meta.append(facts.join(" · "));
    const date = addedDate(doc.added);
    if (date) {
      const time = el("time", null, DATE_FORMAT.format(date));
      time.dateTime = date.toISOString();
      meta.append(`${facts.length ? " · " : ""}added `, time);
    } else if (doc.added) {
      meta.append(`${facts.length ? " · " : ""}added ${doc.added}`);
    }
    info.append(link, meta);
    if (doc.doc_id !== title) info.append(el("p", "doc-id", doc.doc_id));

    item.append(info);
    if (!this.writable) return item;
    const remove = el("button", "btn ghost small", "Remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${title}`);
    if (this.removing.has(doc.doc_id)) {
      item.classList.add("removing"); // listed until its removal job has updated the index
      remove.disabled = true;
    }
    const actions = el("div", "doc-actions");
    actions.append(remove);
    item.append(actions);
    remove.addEventListener("click", () => this.confirmRemove(item, doc, title, remove));
    return item;
  }

  /** An in-page confirmation under the row: "Yes, remove" or Cancel (also Escape). */
  confirmRemove(item, doc, title, trigger) {
    if (item.querySelector(".confirm")) return;
    const box = el("div", "confirm");
    box.setAttribute("role", "group");
    const question = el(
      "p",
      "confirm-text",
      `Remove “${title}”? Its file leaves the corpus folder and its passages leave the index.`,
    );
    question.id = `confirm-${Math.random().toString(36).slice(2)}`;
    box.setAttribute("aria-labelledby", question.id);
    const yes = el("button", "btn danger small", "Yes, remove");
    yes.type = "button";
    const no = el("button", "btn ghost small", "Cancel");
    no.type = "button";
    const buttons = el("div", "confirm-actions");
    buttons.append(no, yes);
    box.append(question, buttons);
    item.append(box);
    trigger.disabled = true;

    const cancel = () => {
      box.remove();
      trigger.disabled = false;
      trigger.focus();
    };
    no.addEventListener("click", cancel);
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation(); // Escape cancels the question, not the whole panel
        cancel();
      }
    });
    yes.addEventListener("click", () => {
      box.remove();
      item.classList.add("removing");
      this.remove(doc, title);
    });
    no.focus(); // the safe choice has the focus; removing takes a deliberate second step
  }

  async remove(doc, title) {
    this.removing.add(doc.doc_id);
    const view = this.startJob(`Removing ${title}`, "removed");
    this.heading.focus(); // the row is about to go; keep the focus somewhere meaningful
    this.announce(`Removing ${title}…`);
    let state = "failed";
    try {
      const res = await apiFetch(documentUrl(doc.doc_id), { method: "DELETE" });
      if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
      const body = await res.json().catch(() => ({}));
      if (res.status === 202 && body.job_id) {
        ({ state } = await this.follow(body.job_id, view));
      } else {
        // 200: removed at once, no job to follow.
        const job = { state: "done", files: [], progress: { done: 1, total: 1, unit: "" } };
        view.update(job);
        this.announce(view.summary(job));
        state = "done";
        await this.refresh();
        this.hooks.changed();
      }
    } catch (err) {
      view.fail(err.message || String(err));
      this.announce(`${view.title}: ${err.message || err}`);
    } finally {
      this.removing.delete(doc.doc_id);
      if (state === "failed") this.refresh(); // the row is back as it was, Remove enabled
      this.endJob();
    }
  }

  // ---------- adding ----------

  async upload(files) {
    if (!files.length) return;
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const title = files.length === 1 ? `Adding ${files[0].name}` : `Adding ${files.length} files`;
    const view = this.startJob(title, "added");
    view.showFiles(files.map((f) => ({ name: f.name, status: "uploading" })));
    this.announce(`${title}…`);
    try {
      const res = await apiFetch("/documents", { method: "POST", body: form });
      if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
      const { job_id: jobId } = await res.json();
      await this.follow(jobId, view);
    } catch (err) {
      view.showFiles(files.map((f) => ({ name: f.name, status: "failed" })));
      view.fail(err.message || String(err));
      this.announce(`${title}: ${err.message || err}`);
    } finally {
      this.endJob();
    }
  }

  listenForDrops() {
    const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    // Files dropped anywhere on the page are added, never opened by the browser in place of
    // the conversation.
    window.addEventListener("dragover", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    window.addEventListener("drop", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      this.zone?.classList.remove("dragging");
      const files = [...event.dataTransfer.files];
      if (!files.length) return;
      this.open(); // shows the job, or why this server takes no uploads
      if (this.writable) this.upload(files);
    });
    if (!this.writable) return;
    this.zone.addEventListener("dragenter", (event) => {
      if (hasFiles(event)) this.zone.classList.add("dragging");
    });
    this.zone.addEventListener("dragleave", (event) => {
      if (!this.zone.contains(event.relatedTarget)) this.zone.classList.remove("dragging");
    });
  }

  // ---------- jobs ----------

  startJob(title, doneWord) {
    const view = new JobView(title, doneWord);
    this.jobs.prepend(view.node);
    this.active += 1;
    this.busy.hidden = false;
    this.toggle.setAttribute("aria-busy", "true");
    return view;
  }

  endJob() {
    this.active -= 1;
    if (this.active > 0) return;
    this.busy.hidden = true;
    this.toggle.setAttribute("aria-busy", "false");
  }

  /** Poll GET /jobs/{id} until the job is done or failed; then refresh the list and counts. */
  async follow(jobId, view) {
    let delay = FIRST_POLL_MS;
    let lost = 0;
    let job;
    for (;;) {
      let res;
      try {
        res = await apiFetch(`/jobs/${encodeURIComponent(jobId)}`);
        lost = 0;
      } catch (err) {
        // The server may be restarting: keep trying a while before giving up on the job.
        lost += 1;
        if (err.status !== 0 || lost >= LOST_POLLS) throw err;
        view.state.textContent = "Server unreachable. Retrying…";
        await sleep(MAX_POLL_MS);
        continue;
      }
      if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
      job = await res.json();
      view.update(job);
      if (job.state === "done" || job.state === "failed") break;
      await sleep(delay);
      delay = Math.min(delay * 1.5, MAX_POLL_MS);
    }
    this.announce(view.summary(job));
    await this.refresh();
    this.hooks.changed();
    return job;
  }
}
