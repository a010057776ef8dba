// The storefront: plain JavaScript against the service's own API.
// Every view, cart and purchase is posted to /events; shelves re-render after.
"use strict";

// ignore: the kinds of reading the shopper took off this query's chips (the service's `ignore`).
const state = { user: "", query: "", filters: { brand: [], category: [] }, ignore: [], lastSearch: null, cart: 0 };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function userId() {
  if (state.user) return state.user;
  let visitor = localStorage.getItem("shopsense-visitor");
  if (!visitor) {
    visitor = "visitor-" + Math.random().toString(36).slice(2, 10);
    localStorage.setItem("shopsense-visitor", visitor);
  }
  return visitor;
}

async function postEvent(type, itemId, extra = {}) {
  await api("/events", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId(), type, item_id: itemId, event_id: crypto.randomUUID(), ...extra }),
  });
}

function card(item, detail) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.itemId = item.item_id;
  const title = document.createElement("div");
  title.className = "title";
  if (item.highlight) title.innerHTML = item.highlight; else title.textContent = item.title;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = [item.category, item.price != null ? `$${item.price.toFixed(2)}` : ""].filter(Boolean).join(" · ");
  li.append(title, meta);
  if (detail) {
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = detail;
    li.append(reason);
  }
  return li;
}

async function renderShelf() {
  const path = `/recommendations/${encodeURIComponent(userId())}?k=8`;
  const data = await api(path);
  $("shelf-title").textContent = state.user ? `Recommended for ${state.user}` : "Recommended for you";
  const list = $("recommended");
  list.replaceChildren(...data.items.map((item) => {
    const li = card(item, item.reason);
    li.onclick = () => openProduct(item.item_id, { request_id: data.request_id });
    return li;
  }));
  list.dataset.requestId = data.request_id;
}

async function search(page = 1) {
  const params = new URLSearchParams({ q: state.query, page, per_page: 12 });
  for (const b of state.filters.brand) params.append("brand", b);
  for (const c of state.filters.category) params.append("category", c);
  for (const kind of state.ignore) params.append("ignore", kind);
  params.set("user_id", userId());
  const data = await api(`/search?${params}`);
  state.lastSearch = data;
  renderUnderstood(data.understood.readings);
  $("product-view").hidden = true;
  $("results-view").hidden = false;
  const none = data.total === 0 && data.query !== "";
  $("result-count").hidden = none;
  $("result-count").textContent = `${data.total} results for “${data.query}”`;
  $("did-you-mean").hidden = !data.did_you_mean;
  $("did-you-mean-link").textContent = data.did_you_mean || "";
  $("results").replaceChildren(...data.hits.map((hit) => {
    const li = card(hit, hit.brand);
    li.onclick = async () => {
      await postEvent("click", hit.item_id, { request_id: data.request_id, query: data.query });
      openProduct(hit.item_id);
    };
    return li;
  }));
  // Nothing matched: say so, and show the popular items the service offers apart.
  $("no-results").hidden = !none;
  $("no-results-title").textContent = `No results for “${data.query}”`;
  $("fallback").replaceChildren(...data.fallback.map((item) => {
    const li = card(item, item.brand);
    li.onclick = () => openProduct(item.item_id);
    return li;
  }));
  renderFacets(data.facets);
}

// What the query was read for, a chip each reading (as `shopsense search` prints
// it); a chip's × searches again without that kind of reading, and its chips go.
// The merchandising rules that changed the results (rules_applied) are the
// store's business, not the shopper's: they are not shown.
function readingLabel(reading) {
  if (reading.kind !== "price") {
    const named = reading.values.map((v) => (reading.kind === "category" ? v.split(" > ").pop() : v));
    return `${reading.field}: ${named.join(" or ")}`;
  }
  const amount = (value) => value.toFixed(2).replace(/\.00$/, "");
  if (reading.price_min == null) return `price under ${amount(reading.price_max)}`;
  if (reading.price_max == null) return `price over ${amount(reading.price_min)}`;
  return `price ${amount(reading.price_min)}-${amount(reading.price_max)}`;
}

function renderUnderstood(readings) {
  const chips = $("understood");
  chips.hidden = !readings.length;
  chips.replaceChildren(...readings.map((reading) => {
    const label = readingLabel(reading);
    const li = document.createElement("li");
    li.className = "chip";
    li.dataset.kind = reading.kind;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Search without ${label}`);
    remove.onclick = () => {
      if (!state.ignore.includes(reading.kind)) state.ignore.push(reading.kind);
      search();
    };
    li.append(`${label} `, remove);
    return li;
  }));
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  for (const field of ["category", "brand"]) {
    const values = facets[field] || [];
    if (!values.length) continue;
    const h = document.createElement("h3");
    h.textContent = field;
    box.append(h);
    for (const { value, count } of values.slice(0, 12)) {
      const label = document.createElement("label");
      const box2 = document.createElement("input");
      box2.type = "checkbox";
      box2.checked = state.filters[field].includes(value);
      box2.onchange = () => {
        const chosen = state.filters[field];
        if (box2.checked) chosen.push(value); else chosen.splice(chosen.indexOf(value), 1);
        search();
      };
      label.append(box2, ` ${value} (${count})`);
      box.append(label);
    }
  }
}

async function openProduct(itemId, extra = {}) {
  await postEvent("view", itemId, extra);
  const data = await api(`/items/${encodeURIComponent(itemId)}/similar?k=6`);
  const known = [...document.querySelectorAll(`[data-item-id="${CSS.escape(itemId)}"] .title`)];
  const title = known.length ? known[0].textContent : itemId;
  const product = $("product");
  product.dataset.itemId = itemId;
  product.innerHTML = "";
  const h = document.createElement("h1");
  h.textContent = title;
  const cart = document.createElement("button");
  cart.id = "add-to-cart";
  cart.textContent = "Add to cart";
  cart.onclick = async () => {
    await postEvent("cart", itemId);
    state.cart += 1;
    $("cart-count").textContent = state.cart;
    await renderShelf();
  };
  const buy = document.createElement("button");
  buy.id = "buy";
  buy.textContent = "Buy now";
  buy.onclick = async () => { await postEvent("purchase", itemId); await renderShelf(); };
  product.append(h, cart, buy);
  $("similar").replaceChildren(...data.items.map((item) => {
    const li = card(item, item.reason);
    li.onclick = () => openProduct(item.item_id);
    return li;
  }));
  $("results-view").hidden = true;
  $("product-view").hidden = false;
  await renderShelf();
}

let suggestTimer = null;
let suggestRound = 0;  // a reply from an older keystroke, or after a search, is dropped
$("q").addEventListener("input", () => {
  clearTimeout(suggestTimer);
  const round = ++suggestRound;
  suggestTimer = setTimeout(async () => {
    const prefix = $("q").value;
    const list = $("suggestions");
    if (!prefix.trim()) { list.replaceChildren(); return; }
    const suggestions = await api(`/suggest?q=${encodeURIComponent(prefix)}&k=8`);
    if (round !== suggestRound) return;
    list.replaceChildren(...suggestions.map((s) => {
      const li = document.createElement("li");
      li.textContent = s.text;
      li.onclick = () => { $("q").value = s.text; list.replaceChildren(); submitSearch(); };
      return li;
    }));
  }, 120);
});

function submitSearch() {
  clearTimeout(suggestTimer);
  suggestRound += 1;
  state.query = $("q").value;
  state.filters = { brand: [], category: [] };
  state.ignore = [];
  $("suggestions").replaceChildren();
  search();
}

$("did-you-mean-link").addEventListener("click", (event) => {
  event.preventDefault();
  $("q").value = $("did-you-mean-link").textContent;
  submitSearch();
});
$("q").addEventListener("keydown", (event) => { if (event.key === "Escape") $("suggestions").replaceChildren(); });
$("search-form").addEventListener("submit", (event) => { event.preventDefault(); submitSearch(); });
$("home").addEventListener("click", (event) => {
  event.preventDefault();
  $("results-view").hidden = true;
  $("product-view").hidden = true;
  renderShelf();
});
$("user").addEventListener("change", () => { state.user = $("user").value; state.cart = 0; $("cart-count").textContent = 0; renderShelf(); });

(async () => {
  const users = await api("/users?limit=20");
  $("user").append(...users.map((u) => { const o = document.createElement("option"); o.value = o.textContent = u; return o; }));
  await renderShelf();
})();
