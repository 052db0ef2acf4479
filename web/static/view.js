// The document view: the whole source text with the cited span in <mark id="hl">, scrolled to.
import { ApiError, apiFetch, appendMarked, documentUrl, el, errorDetail } from "./common.js";

const article = document.getElementById("doc");
const title = document.getElementById("doc-title");
const meta = document.getElementById("doc-meta");
const errorBox = document.getElementById("doc-error");
const textBox = document.getElementById("doc-text");

function showError(message) {
  errorBox.hidden = false;
  errorBox.textContent = message;
}

async function load(docId, start, end) {
  const res = await apiFetch(documentUrl(docId, start, end));
  if (!res.ok) throw new ApiError(await errorDetail(res), res.status);
  return res.json();
}

async function main() {
  const docId = article.dataset.docId;
  const params = new URLSearchParams(window.location.search);
  const start = params.has("start") ? Number(params.get("start")) : undefined;
  const end = params.has("end") ? Number(params.get("end")) : undefined;
  let doc;
  try {
    doc = await load(docId, start, end);
  } catch (err) {
    if (err.status !== 422 || start === undefined) {
      title.textContent = err.status === 404 ? "Document not found" : "Cannot show this document";
      showError(err.message);
      article.setAttribute("aria-busy", "false");
      return;
    }
    // A span that does not fit: show the document anyway, and say why nothing is marked.
    showError(err.message);
    doc = await load(docId);
  }
  document.title = `${doc.title} · qa`;
  title.textContent = doc.title;
  meta.textContent = doc.highlight
    ? `${doc.source} · highlighted characters ${doc.highlight.start}–${doc.highlight.end}`
    : doc.source;
  const marks = doc.highlight
    ? appendMarked(textBox, doc.text, [[doc.highlight.start, doc.highlight.end]])
    : (textBox.append(doc.text), []);
  article.setAttribute("aria-busy", "false");
  if (marks.length) {
    marks[0].id = "hl";
    marks[0].tabIndex = -1;
    marks[0].scrollIntoView({ block: "center" });
    marks[0].focus({ preventScroll: true });
  }
}

main().catch((err) => showError(err.message || String(err)));
