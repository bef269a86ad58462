// xmr web page: one search box, modality tabs, drop a picture, a sound or a video, click a result for more like it.
// Everything user-provided (file names, snippets) goes in through textContent, never as HTML.
"use strict";

const PAGE = 30;
const state = { text: "", type: "any", files: [], like: null, offset: 0, seq: 0, items: null, previews: [], kinds: {},
  videoCards: new Map() };
const $ = (sel) => document.querySelector(sel);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function baseName(path) {
  return path.split(/[\\/]/).pop();
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function setStatus(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function setBusy(busy) {
  // Screen readers wait for the results to settle; so can anything that drives the page.
  $("#results").setAttribute("aria-busy", String(busy));
}

function showEmpty(title, lines) {
  const box = el("div", { class: "empty", "data-testid": "empty" }, [el("h2", { text: title })]);
  for (const line of lines) {
    const p = el("p");
    // `code` spans are marked with backticks in the message
    line.split("`").forEach((part, i) => p.append(i % 2 ? el("code", { text: part }) : part));
    box.append(p);
  }
  $("#results").replaceChildren(box);
  $("#more").hidden = true;
}

async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, ...options });
  } catch (e) {
    throw new Error("Cannot reach the xmr server. Is `xmr serve` still running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    const hints = {
      401: " Open the address `xmr serve` printed, with its ?token=.",
      413: " Try a smaller file.",
      503: " Check the server's terminal.",
    };
    throw new Error(`${detail || response.statusText || "Request failed"}${hints[response.status] || ""}`);
  }
  return body;
}

// How each view of a kind (GET /api/health: kinds[].view) draws a hit in its card.
const VIEWS = {
  thumbnail(hit, node, body, name) {
    node.prepend(el("img", { class: "thumb", src: `/api/items/${hit.item_id}/thumbnail`, alt: name, loading: "lazy" }));
  },
  player(hit, node, body) {
    const fragment = hit.start != null ? `#t=${hit.start},${hit.end}` : "";
    const player = el("audio", { controls: true, preload: "metadata", src: `/api/items/${hit.item_id}/media${fragment}` });
    // Media fragments start the player at the window; keep it there if the browser ignored them.
    player.addEventListener("loadedmetadata", () => {
      if (hit.start != null && player.currentTime < hit.start) player.currentTime = hit.start;
    }, { once: true });
    player.addEventListener("click", (e) => e.stopPropagation());
    body.append(player);
    if (hit.start != null) body.append(el("span", { class: "when", text: `${clock(hit.start)} – ${clock(hit.end)}` }));
  },
  snippet(hit, node, body) {
    if (hit.snippet) body.append(el("p", { class: "snippet", text: hit.snippet }));
  },
  // A video: its poster (the matched moment), played from the segment's start; every matched
  // segment of the video is a mark on its timeline (more hits of the same video join this card).
  video(hit, node, body) {
    const video = el("video", {
      class: "thumb", controls: true, preload: "metadata", poster: `/api/items/${hit.item_id}/thumbnail`,
      // A shot starts on its first frame's timestamp; a player asked for exactly that time may
      // round it down and show the last frame before the cut, so ask for a millisecond later.
      src: `/api/items/${hit.item_id}/media#t=${(hit.start + 0.001).toFixed(3)},${hit.end}`,
    });
    video.addEventListener("click", (e) => e.stopPropagation());
    const line = el("div", { class: "timeline", "data-testid": "timeline", title: "Matched moments" });
    node.timeline = { video, line, hits: [] };
    video.addEventListener("loadedmetadata", () => {
      if (video.currentTime < hit.start) video.currentTime = hit.start + 0.001;
      drawMarks(node);
    }, { once: true });
    node.prepend(video);
    body.append(line, el("span", { class: "when", text: `${clock(hit.start)} – ${clock(hit.end)}` }));
    addMark(node, hit);
  },
};

function addMark(node, hit) {
  node.timeline.hits.push(hit);
  drawMarks(node);
}

function drawMarks(node) {
  const { video, line, hits } = node.timeline;
  const duration = Number.isFinite(video.duration) && video.duration > 0 ? video.duration
    : Math.max(...hits.map((h) => h.end)); // before the metadata: the latest moment known
  line.replaceChildren(...hits.map((h, i) => {
    const heard = h.track === "sound" || h.track === "speech";
    const mark = el("button", {
      type: "button", class: `mark${heard ? " heard" : ""}${i === 0 ? " best" : ""}`, "data-start": String(h.start),
      "data-item-id": String(h.item_id),
      title: `${clock(h.start)} – ${clock(h.end)} (${heard ? "heard" : "seen"})`,
    });
    mark.style.left = `${(100 * h.start) / duration}%`;
    mark.style.width = `${(100 * (h.end - h.start)) / duration}%`;
    mark.addEventListener("click", (e) => {
      e.stopPropagation();
      video.currentTime = h.start + 0.001;
      video.play().catch(() => {});
    });
    return mark;
  }));
}

function card(hit) {
  const name = baseName(hit.path);
  const kind = state.kinds[hit.modality] || { noun: hit.modality, view: "snippet" };
  // `score` orders the list; the cosine and the words' match are shown under their own names
  const score = `score ${hit.score.toFixed(3)}` + (hit.cosine != null && hit.cosine !== hit.score ? ` · cos ${hit.cosine.toFixed(3)}` : "")
    + (hit.words != null ? ` · words ${hit.words.toFixed(2)}` : "");
  const node = el("article", {
    class: `result ${hit.modality} view-${kind.view}`, tabIndex: 0, title: `${hit.path}\n${score}\nClick for more like this`,
    "data-item-id": String(hit.item_id), "data-modality": hit.modality, "data-score": String(hit.score),
  });
  node.append(el("span", { class: "kind", text: kind.noun }));
  node.append(el("span", { class: "score", text: score }));
  const body = el("div", { class: "body" });
  (VIEWS[kind.view] || VIEWS.snippet)(hit, node, body, name);
  if (hit.snippet && kind.view !== "snippet") {
    // words read off a picture, or said in a recording: shown under it, as found
    const how = hit.track === "speech" ? "said" : "read";
    const sure = hit.confidence != null ? ` (${Math.round(hit.confidence * 100)} % sure)` : "";
    body.append(el("p", { class: `snippet words ${how}`, "data-testid": "words", title: `Words ${how}${sure}`, text: hit.snippet }));
  }
  const part = hit.page ? ` · page ${hit.page}` : hit.snippet && hit.chunk && hit.start == null ? ` · part ${hit.chunk + 1}` : "";
  body.append(el("span", { class: "name", text: name + part }));
  const facts = [hit.date ? new Date(hit.date * 1000).toISOString().slice(0, 10) : null, hit.camera,
    hit.lat != null ? `${hit.lat.toFixed(3)}, ${hit.lon.toFixed(3)}` : null].filter(Boolean);
  if (facts.length) body.append(el("span", { class: "facts", "data-testid": "facts", text: facts.join(" · ") }));
  if (hit.tags && hit.tags.length) {
    const tags = el("span", { class: "tags", "data-testid": "tags" });
    for (const t of hit.tags.slice(0, 6)) {
      tags.append(el("span", { class: "tag", title: `${Math.round(t.confidence * 100)} % sure`, text: t.label }));
    }
    body.append(tags);
  }
  if (hit.faces && hit.faces.length) addFaces(node, body, hit);
  node.append(body);
  const more = () => moreLike(hit.item_id, name);
  node.addEventListener("click", more);
  node.addEventListener("keydown", (e) => { if (e.key === "Enter") more(); });
  return node;
}

function render(answer, append) {
  const results = $("#results");
  if (!append) {
    results.replaceChildren();
    state.videoCards = new Map();
  }
  for (const hit of answer.hits) {
    const same = (state.kinds[hit.modality] || {}).view === "video" && state.videoCards.get(hit.path);
    if (same) {
      addMark(same, hit); // one card per video, its moments on the timeline
      continue;
    }
    const node = card(hit);
    if (node.timeline) state.videoCards.set(hit.path, node);
    results.append(node);
  }
  $("#more").hidden = !answer.more;
  const shown = results.querySelectorAll(".result").length;
  if (!shown) {
    if (state.items === 0) return showEmptyLibrary();
    const kind = state.kinds[state.type];
    if (kind && answer.items_by_modality && !answer.items_by_modality[state.type]) {
      showEmpty(`This library has no ${kind.noun}s`, [`Index a folder with some, then search here: \`xmr index PATH\``,
        "Or look in the All tab."]);
      setStatus("");
      return;
    }
    const what = state.like ? "items like this one" : state.text ? `“${state.text}”` : "this query";
    const tab = state.type === "any" ? "" : " or the All tab";
    showEmpty(`No results for ${what}`, [`Try other words${tab}, or drop a picture, a sound or a video on the page.`]);
    setStatus("");
    return;
  }
  const partial = answer.partial
    ? ` · partial: shard${answer.missing_shards.length === 1 ? "" : "s"} ${answer.missing_shards.join(", ")} did not answer`
    : "";
  setStatus(`${shown} result${shown === 1 ? "" : "s"} · ${answer.took_ms} ms${partial}`, Boolean(answer.partial));
}

function showEmptyLibrary() {
  showEmpty("This library is empty", [
    "Index a folder of pictures, documents or sounds, then search here:",
    "`xmr index ~/Pictures`",
    "The page sees new items as soon as the index run saves them.",
  ]);
  setStatus("");
}

async function search(append = false) {
  state.text = $("#q").value.trim(); // what the box shows is what is searched, with any chips
  const params = new URLSearchParams({ type: state.type, k: PAGE, offset: append ? state.offset : 0 });
  if (!state.like) {
    params.set("mode", $("#mode").value); // "more like this" is by meaning alone
    for (const [key, value] of filterParams()) params.set(key, value);
  }
  if (!append) state.offset = 0;
  let request;
  if (state.like) {
    request = api(`/api/items/${state.like.id}/similar?${params}`);
  } else if (state.files.length) {
    const form = new FormData();
    for (const [key, value] of params) form.append(key, value);
    if (state.text) form.append("q", state.text);
    for (const file of state.files) form.append(fileField(file), file, file.name);
    request = api("/api/search/upload", { method: "POST", body: form });
  } else if (state.text) {
    params.set("q", state.text);
    request = api(`/api/search?${params}`);
  } else {
    state.seq += 1; // nothing to ask: an answer still on its way is stale
    setBusy(false);
    $("#results").replaceChildren();
    $("#more").hidden = true;
    setStatus("");
    if (state.items === 0) showEmptyLibrary();
    return;
  }
  const seq = ++state.seq; // answers can arrive out of order: only the latest request may render
  setStatus("Searching…");
  setBusy(true);
  let grew = false;
  try {
    const answer = await request;
    if (seq !== state.seq) return;
    if (answer.items !== undefined) state.items = answer.items;
    state.offset = (append ? state.offset : 0) + answer.hits.length;
    render(answer, append);
    if (!append) renderFilterChips(answer.tokens || []);
    if (!append) remember();
    grew = answer.hits.length > 0;
  } catch (e) {
    if (seq !== state.seq) return;
    setStatus(e.message, true);
    if (!append) $("#results").replaceChildren();
    $("#more").hidden = true;
  } finally {
    if (seq === state.seq) { // the latest answer is drawn
      setBusy(false);
      if (grew) moreIfInView();
    }
  }
}

// The next page when the end of the list is (nearly) in view. The observer only tells when that
// changes, so after each answer this looks again: a scroll to the end while a search was under
// way, or a first page shorter than the window, would otherwise wait for the user to scroll back.
function moreIfInView() {
  const more = $("#more");
  if (more.hidden || !more.getClientRects().length || $("#results").getAttribute("aria-busy") === "true") return;
  if (more.getBoundingClientRect().top < window.innerHeight + 400) search(true);
}

function moreLike(id, name) {
  state.like = { id, name };
  $("#like-name").textContent = name;
  $("#like").hidden = false;
  window.scrollTo({ top: 0 });
  search();
}

function clearLike() {
  state.like = null;
  $("#like").hidden = true;
  search();
}

// The upload field a dropped file goes in: what it is by its type.
function fileField(file) {
  return file.type.startsWith("audio/") ? "audio" : file.type.startsWith("video/") ? "video" : "image";
}

function setFiles(files) {
  const usable = [...files].filter((f) => /^(image|audio|video)\//.test(f.type));
  if (usable.length < files.length) {
    setStatus("Only pictures, sounds and videos can be searched by; other files were left out.", true);
  }
  if (!usable.length) return;
  state.files = usable;
  state.like = null;
  $("#like").hidden = true;
  renderChips();
  search();
}

function renderChips() {
  const chips = $("#chips");
  chips.replaceChildren();
  state.previews.forEach((url) => URL.revokeObjectURL(url));
  state.previews = [];
  state.files.forEach((file, i) => {
    const chip = el("span", { class: "chip", "data-testid": "chip" });
    if (file.type.startsWith("image/")) {
      const url = URL.createObjectURL(file);
      state.previews.push(url);
      chip.append(el("img", { src: url, alt: "" }));
    } else {
      chip.append(el("span", { text: file.type.startsWith("video/") ? "▶" : "♪" }));
    }
    chip.append(el("span", { text: file.name }));
    const remove = el("button", { type: "button", title: `Remove ${file.name}`, text: "✕" });
    remove.addEventListener("click", () => {
      state.files.splice(i, 1);
      renderChips();
      search();
    });
    chip.append(remove);
    chips.append(chip);
  });
}

// The filters typed in the box (type:image, after:2020, tag:red OR tag:blue...), as the server
// parsed them: one chip each; its ✕ takes the token out of the box and searches again.
function renderFilterChips(tokens) {
  const row = $("#filter-chips");
  row.replaceChildren();
  for (const token of tokens) {
    const chip = el("span", { class: "chip filter", "data-testid": "filter-chip", "data-key": token.key, title: token.text });
    chip.append(el("span", { text: `${token.key}: ${token.value.split("|").join(" or ")}` }));
    const remove = el("button", { type: "button", title: `Remove ${token.text}`, text: "✕" });
    remove.addEventListener("click", () => {
      $("#q").value = $("#q").value.replace(token.text, " ").replace(/\s+/g, " ").trim();
      search();
    });
    chip.append(remove);
    row.append(chip);
  }
  row.hidden = !tokens.length;
}

const FILTERS = ["after", "before", "in", "camera", "near", "min_size", "max_size", "tag", "person", "sort", "cutoff"];

function filterParams() {
  // The filter fields that are set, as the API names them.
  const out = new URLSearchParams();
  for (const name of FILTERS) {
    const field = $(`#f-${name}`);
    const value = field.type === "checkbox" ? (field.checked ? field.value : "") : field.value.trim();
    if (value && !(name === "sort" && value === "relevance")) out.set(name, value);
  }
  return out;
}

function address() {
  // The query, tab, match mode, filters and order, as the page's address keeps them.
  const params = new URLSearchParams();
  if (state.text && !state.files.length && !state.like) params.set("q", state.text);
  if (state.type !== "any") params.set("type", state.type);
  if ($("#mode").value !== "hybrid") params.set("mode", $("#mode").value);
  for (const [key, value] of filterParams()) params.set(key, value);
  return params.toString();
}

function remember() {
  // A new search is a new entry in the history: back and forward step through searches.
  const hash = address();
  if (hash === location.hash.slice(1)) return;
  history.pushState(null, "", hash ? `#${hash}` : location.pathname);
}

function restore() {
  // The page's state from its address (on load, back and forward).
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("view") === "dupes") return showDupes();
  if (params.get("view") === "people") return showPeople();
  if (params.get("who")) return showPerson(params.get("who")); // a person's view (`person=` is the filter)
  $("#dupes").hidden = true;
  $("#people").hidden = true;
  $("#person-bar").hidden = true;
  $("#results").hidden = false;
  selectTab(params.get("type") || "any");
  state.text = params.get("q") || "";
  $("#q").value = state.text;
  $("#mode").value = params.get("mode") || "hybrid";
  for (const name of FILTERS) {
    const field = $(`#f-${name}`);
    const value = params.get(name) || "";
    if (field.type === "checkbox") field.checked = value === field.value;
    else {
      if (field.tagName === "SELECT" && value && ![...field.options].some((o) => o.value === value)) {
        field.append(el("option", { value, text: value }));
      }
      field.value = value || (name === "sort" ? "relevance" : "");
    }
  }
  $("#filters").open = FILTERS.some((name) => params.get(name));
  state.like = null;
  $("#like").hidden = true;
  if (state.text) search();
  else {
    $("#results").replaceChildren();
    $("#more").hidden = true;
    setStatus("");
    if (state.items === 0) showEmptyLibrary();
  }
}

function selectTab(type) {
  state.type = type;
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.type === type));
  }
}

function addTabs(kinds) {
  // One tab per kind the server knows, in its order, after "All".
  const tabs = $("#tabs");
  for (const kind of kinds) {
    state.kinds[kind.name] = kind;
    if (tabs.querySelector(`button[data-type="${kind.name}"]`)) continue;
    const tab = el("button", { type: "button", role: "tab", "data-type": kind.name, "aria-selected": "false", text: kind.label });
    tab.addEventListener("click", () => {
      selectTab(kind.name);
      search();
    });
    tabs.append(tab);
  }
  selectTab(state.type);
}

async function loadTags() {
  try {
    const answer = await api("/api/tags");
    const select = $("#f-tag");
    for (const t of answer.tags) {
      if (!t.items || [...select.options].some((o) => o.value === t.label)) continue;
      select.append(el("option", { value: t.label, text: `${t.label} (${t.items})` }));
    }
  } catch (e) { /* tags are extras: search works without the list */ }
}

async function showDupes() {
  // Groups of duplicates, each keeper first; a picture's thumbnail, else its name.
  if (location.hash.slice(1) !== "view=dupes") history.pushState(null, "", "#view=dupes");
  $("#results").hidden = true;
  $("#more").hidden = true;
  $("#people").hidden = true;
  $("#person-bar").hidden = true;
  $("#dupes").hidden = false;
  const box = $("#dupe-groups");
  setStatus("Looking for duplicates…");
  setBusy(true);
  try {
    const answer = await api(`/api/dupes?threshold=${encodeURIComponent($("#d-threshold").value)}`);
    box.replaceChildren();
    answer.groups.forEach((g, n) => {
      const group = el("div", { class: "dupe-group", "data-testid": "dupe-group" },
        [el("h3", { text: `Group ${n + 1} · ${g.exact ? "same content" : "near duplicates"}` })]);
      for (const [f, keep] of [[g.keeper, true], ...g.others.map((o) => [o, false])]) {
        const kind = state.kinds[f.modality] || {};
        const item = el("figure", { class: keep ? "keeper" : "other", title: f.path });
        if (kind.thumbnail && f.item_id != null) item.append(el("img", { src: `/api/items/${f.item_id}/thumbnail?size=256`, alt: "", loading: "lazy" }));
        const how = keep ? "keep" : f.same_content ? "same content" : `similarity ${f.similarity.toFixed(3)}`;
        item.append(el("figcaption", { text: `${baseName(f.path)} · ${how} · ${Math.round(f.size / 1024)} KB` }));
        group.append(item);
      }
      box.append(group);
    });
    setStatus(`${answer.groups.length} group${answer.groups.length === 1 ? "" : "s"} · ${answer.took_ms} ms`);
    if (!answer.groups.length) box.replaceChildren(el("p", { class: "empty", text: "No duplicates at this similarity." }));
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    setBusy(false);
  }
}

async function loadLibrary() {
  try {
    const info = await api("/api/health");
    addTabs(info.kinds || []);
    state.items = info.items;
    const parts = Object.entries(info.items_by_modality || {}).map(([kind, n]) => `${n} ${kind}`);
    $("#library").textContent = `${info.library} · ${info.items} item${info.items === 1 ? "" : "s"}${parts.length ? ` (${parts.join(", ")})` : ""}`;
    if (!info.items && !state.text) showEmptyLibrary();
    showWatch(info.watch, info.last_indexed);
  } catch (e) {
    setStatus(e.message, true);
  }
}

// `xmr serve --watch` (or an `xmr index --watch`): what the watcher is doing, looked at again
// every few seconds while there is one, with the library's item counts.
function showWatch(watch, lastIndexed) {
  const line = $("#watch");
  line.hidden = !watch;
  clearTimeout(state.watchTimer);
  if (!watch) return;
  const doing = { indexing: "indexing changes…", starting: "starting to watch…" }[watch.state];
  const parts = [doing || `watching${watch.polling ? " (polling)" : ""}`];
  if (watch.pending) parts.push(`${watch.pending} change${watch.pending === 1 ? "" : "s"} pending`);
  const last = watch.last_change || lastIndexed; // this watcher's last run that changed something, or the newest file
  if (last) parts.push(`last change ${new Date(last).toLocaleString()}`);
  for (const root of watch.paused || []) parts.push(`paused: ${root} is not there`);
  line.textContent = `· ${parts.join(" · ")}`;
  state.watchTimer = setTimeout(() => { if (!document.hidden) loadLibrary(); else showWatch(watch, lastIndexed); }, 3000);
}

function setup() {
  $("#search").addEventListener("submit", (e) => {
    e.preventDefault();
    state.like = null;
    $("#like").hidden = true;
    search();
  });
  $("#tabs button[data-type=any]").addEventListener("click", () => {
    selectTab("any");
    search();
  });
  $("#file").addEventListener("change", (e) => {
    setFiles(e.target.files);
    e.target.value = "";
  });
  $("#more").addEventListener("click", () => search(true));
  $("#like-clear").addEventListener("click", clearLike);

  let depth = 0;
  const drop = $("#drop");
  window.addEventListener("dragenter", (e) => {
    if (![...e.dataTransfer.types].includes("Files")) return;
    depth += 1;
    drop.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) drop.hidden = true;
  });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    drop.hidden = true;
    if (e.dataTransfer.files.length) setFiles(e.dataTransfer.files);
  });

  for (const name of FILTERS) $(`#f-${name}`).addEventListener("change", () => { if (!state.like) search(); });
  $("#f-clear").addEventListener("click", () => {
    for (const name of FILTERS) {
      const field = $(`#f-${name}`);
      if (field.type === "checkbox") field.checked = false;
      else field.value = name === "sort" ? "relevance" : "";
    }
    search();
  });
  // Scrolling on loads the next page (the server keeps the query's list: nothing is encoded again).
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) moreIfInView();
  }, { rootMargin: "400px" }).observe($("#more"));
  window.addEventListener("popstate", restore);
  $("#d-threshold").addEventListener("change", showDupes);
  $("#d-back").addEventListener("click", () => history.back());
  // The address's search once the tabs are known, unless the user has already typed or searched
  // while the library was loading (the address would undo what they did).
  setupPeople();
  loadLibrary().then(() => {
    loadTags();
    loadPeopleFilter();
    if (!state.seq && !$("#q").value) restore();
  });
  $("#q").focus();
}

document.addEventListener("DOMContentLoaded", setup);
