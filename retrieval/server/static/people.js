// xmr web page, people: the People view (round faces, names renamed in place, counts), a
// person's pictures and moments, the faces' boxes on a picture, the Person filter.
// Uses app.js's helpers ($, el, api, state, render, setStatus, setBusy, search). Names and paths
// go in through textContent, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function personName(p) {
  return p.name || `Person ${p.id}`;
}

// A picture's (or a video moment's) faces as boxes over its thumbnail, drawn in the picture's
// own proportions (the SVG is cut like the thumbnail: object-fit: cover = slice), and the
// people's names under it; a name (or a box) shows that person's pictures.
function addFaces(node, body, hit) {
  const img = node.querySelector("img.thumb");
  if (img) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "faces");
    svg.setAttribute("preserveAspectRatio", "xMidYMid slice");
    const draw = () => {
      const w = img.naturalWidth || 1;
      const h = img.naturalHeight || 1;
      svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
      svg.replaceChildren(...hit.faces.map((f) => {
        const rect = document.createElementNS(SVG, "rect");
        const [x, y, fw, fh] = f.box;
        for (const [k, v] of [["x", x * w], ["y", y * h], ["width", fw * w], ["height", fh * h]]) rect.setAttribute(k, String(v));
        rect.setAttribute("data-testid", "face-box");
        rect.setAttribute("data-person", String(f.person));
        const title = document.createElementNS(SVG, "title");
        title.textContent = f.person != null ? personName({ id: f.person, name: f.name }) : "a face";
        rect.append(title);
        if (f.person != null) rect.addEventListener("click", (e) => { e.stopPropagation(); showPerson(f.person); });
        return rect;
      }));
    };
    if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw, { once: true });
    const frame = el("div", { class: "frame" });
    img.replaceWith(frame);
    frame.append(img, svg);
  }
  const names = el("span", { class: "people", "data-testid": "people" });
  const seen = new Set();
  for (const f of hit.faces) {
    if (f.person == null || seen.has(f.person)) continue;
    seen.add(f.person);
    const who = el("button", { type: "button", class: "person-chip", text: personName({ id: f.person, name: f.name }),
      title: "Their pictures and moments" });
    who.addEventListener("click", (e) => { e.stopPropagation(); showPerson(f.person); });
    names.append(who);
  }
  if (seen.size) body.append(names);
}

// The People view: every person, named ones first; click a face for their pictures, a name to rename.
async function showPeople() {
  if (location.hash.slice(1) !== "view=people") history.pushState(null, "", "#view=people");
  $("#results").hidden = true;
  $("#more").hidden = true;
  $("#dupes").hidden = true;
  $("#people").hidden = false;
  $("#person-bar").hidden = true;
  setStatus("Loading people…");
  try {
    const answer = await api("/api/people");
    const grid = $("#people-grid");
    grid.replaceChildren(...answer.people.map(personCard));
    const n = answer.people.length;
    setStatus(n ? `${n} ${n === 1 ? "person" : "people"}` : "");
    if (!n) {
      grid.replaceChildren(el("p", { class: "empty", text: "No faces found yet. `xmr index` finds them when the face models "
        + "are installed: pip install 'xmr[faces]'." }));
    }
  } catch (e) {
    setStatus(e.message, true);
  }
}

function personCard(p) {
  const card = el("figure", { class: "person", "data-testid": "person", "data-person": String(p.id) });
  const face = el("img", { class: "face", src: p.thumbnail_url || "", alt: personName(p), loading: "lazy",
    title: "Their pictures and moments" });
  face.addEventListener("click", () => showPerson(p.id));
  const name = el("button", { type: "button", class: `name${p.name ? "" : " unnamed"}`, text: p.name || "Add a name",
    title: "Rename", "data-testid": "person-name" });
  name.addEventListener("click", () => rename(card, p));
  card.append(face, el("figcaption", {}, [name, el("span", { class: "count", text: `${p.faces} × · ${p.files.length} file${p.files.length === 1 ? "" : "s"}` })]));
  return card;
}

function rename(card, p) {
  const input = el("input", { type: "text", value: p.name || "", placeholder: "Name", "aria-label": "Name", "data-testid": "rename" });
  const caption = card.querySelector("figcaption");
  const old = caption.firstChild;
  caption.replaceChild(input, old);
  input.focus();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    if (save && value && value !== p.name) {
      try {
        const answer = await api(`/api/people/${p.id}`, { method: "PATCH", headers: { "Content-Type": "application/json",
          Accept: "application/json" }, body: JSON.stringify({ name: value }) });
        p.name = answer.name;
        loadPeopleFilter();
      } catch (e) {
        setStatus(e.message, true);
      }
    }
    caption.replaceChild(personCard(p).querySelector("figcaption").firstChild, input);
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

// A person's pictures and video moments (one card per video, the moments on its timeline).
async function showPerson(id) {
  if (location.hash.slice(1) !== `who=${id}`) history.pushState(null, "", `#who=${id}`);
  $("#people").hidden = true;
  $("#dupes").hidden = true;
  $("#results").hidden = false;
  const seq = ++state.seq;
  setBusy(true);
  setStatus("Loading…");
  try {
    const person = await api(`/api/people/${encodeURIComponent(id)}`);
    const answer = await api(`/api/people/${encodeURIComponent(id)}/hits?k=200`);
    if (seq !== state.seq) return;
    $("#person-name").textContent = personName(person);
    $("#person-bar").hidden = false;
    $("#f-person").value = String(person.id);
    render(answer, false);
    $("#more").hidden = true;
    setStatus(`${personName(person)} · seen ${person.faces} × in ${person.files.length} file${person.files.length === 1 ? "" : "s"}`);
  } catch (e) {
    if (seq === state.seq) setStatus(e.message, true);
  } finally {
    if (seq === state.seq) setBusy(false);
  }
}

async function loadPeopleFilter() {
  try {
    const answer = await api("/api/people");
    const select = $("#f-person");
    const keep = select.value;
    select.replaceChildren(el("option", { value: "", text: "anyone" }), ...answer.people.map((p) =>
      el("option", { value: String(p.id), text: `${personName(p)} (${p.faces})` })));
    select.value = keep;
  } catch (e) { /* people are extras: search works without the list */ }
}

function setupPeople() {
  $("#person-clear").addEventListener("click", () => {
    $("#person-bar").hidden = true;
    $("#f-person").value = "";
    history.pushState(null, "", location.pathname);
    restore();
  });
  $("#p-back").addEventListener("click", () => history.back());
}
