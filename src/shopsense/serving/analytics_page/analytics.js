// The analytics page: plain JavaScript against GET /admin/analytics/data.
// The admin key is asked for once per tab and kept in sessionStorage; the page
// holds no figure until the service answers with the key.
"use strict";

const KEY = "shopsense-admin-key";
const SVG = "http://www.w3.org/2000/svg";
const PERCENTS = ["ctr", "add_to_cart_rate", "conversion", "percent"];
const SERIES_COLOURS = 6; // .series-0 … .series-5 in the style sheet
const $ = (id) => document.getElementById(id);
let figures = null;

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined && text !== null) made.textContent = text;
  if (className) made.className = className;
  return made;
}

function svgElement(tag, attributes, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function number(value, metric) {
  if (value === null || value === undefined) return "–";
  if (PERCENTS.includes(metric)) return `${(100 * value).toFixed(2)}%`;
  if (metric === "impressions" || metric === "count") return value.toLocaleString("en");
  return value.toFixed(2);
}

// A table cell: the value, and its 95% interval under it.
function withInterval(estimate, metric) {
  const cell = element("td", number(estimate.value, metric));
  if (estimate.low !== null && estimate.high !== null) {
    cell.append(element("small", `[${number(estimate.low, metric)}, ${number(estimate.high, metric)}]`, "interval"));
  }
  return cell;
}

function pValue(p) {
  if (p === null || p === undefined) return "–";
  return p < 0.0001 ? "<0.0001" : p.toFixed(4);
}

function row(cells, className) {
  const tr = element("tr", null, className);
  for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", cell));
  return tr;
}

function fill(tableId, rows) {
  $(tableId).tBodies[0].replaceChildren(...rows);
}

// ------------------------------------------------------------------ the key
function show(view) {
  for (const id of ["key-view", "loading", "figures", "problem"]) $(id).hidden = id !== view;
  const signedIn = view !== "key-view";
  $("refresh").hidden = !signedIn;
  $("forget").hidden = !signedIn;
}

function askForKey(message) {
  figures = null;
  $("key-message").textContent = message || "";
  show("key-view");
  $("key").focus();
}

function problem(message) {
  $("problem").textContent = message;
  show("problem");
}

async function load() {
  const key = sessionStorage.getItem(KEY);
  if (!key) {
    askForKey();
    return;
  }
  show("loading");
  let response;
  try {
    response = await fetch(`/admin/analytics/data?days=${$("days").value}`, {
      headers: { Authorization: `Bearer ${key}` },
    });
  } catch (error) {
    problem(`The service cannot be reached: ${error.message}`);
    return;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey("The service refused that key: enter the admin API key it was started with.");
    return;
  }
  if (!response.ok) {
    problem(`The service answered ${response.status}: ${await response.text()}`);
    return;
  }
  figures = await response.json();
  render();
  show("figures");
}

// ------------------------------------------------------------------ tables
function renderPlacements() {
  const rows = [];
  const cells = (figure) => [
    number(figure.users, "count"),
    number(figure.impressions, "count"),
    withInterval(figure.ctr, "ctr"),
    withInterval(figure.add_to_cart_rate, "add_to_cart_rate"),
    withInterval(figure.conversion, "conversion"),
    withInterval(figure.revenue_per_visitor, "revenue_per_visitor"),
    number(figure.revenue, "revenue"),
  ];
  for (const placement of figures.placements) {
    rows.push(row([placement.placement, "all", ...cells(placement)], "placement"));
    for (const arm of placement.arms) {
      const name = arm.experiment === null ? "outside experiments" : `${arm.experiment} · ${arm.arm}`;
      rows.push(row(["", name, ...cells(arm)], "arm"));
    }
  }
  fill("placements", rows);
  const breakdown = $("breakdown");
  const chosen = breakdown.value;
  breakdown.replaceChildren(element("option", "every placement"));
  breakdown.options[0].value = "";
  for (const placement of figures.placements) {
    if (!placement.arms.length) continue;
    const option = element("option", `arms of ${placement.placement}`);
    option.value = placement.placement;
    breakdown.append(option);
  }
  breakdown.value = [...breakdown.options].some((o) => o.value === chosen) ? chosen : "";
}

// The power reached, and under it how many shoppers (both arms) 80% power needs.
function power(lift) {
  if (lift.power === null) return "–";
  const cell = element("td", `${(100 * lift.power).toFixed(0)}%`);
  cell.append(element("small", `80%: ${number(lift.users_needed, "count")}`, "interval"));
  return cell;
}

function renderExperiments() {
  const rows = [];
  for (const experiment of figures.experiments) {
    const ratio = experiment.sample_ratio_p_value === null ? "–"
      : `p ${pValue(experiment.sample_ratio_p_value)}${experiment.sample_ratio_mismatch ? " MISMATCH" : " ok"}`;
    const head = [experiment.name, experiment.placement, experiment.status + (experiment.winner ? ` (${experiment.winner})` : ""),
      experiment.metric, number(experiment.users, "count")];
    const lifts = experiment.lifts.map((lift) => [
      lift.arm,
      withInterval(lift.absolute, experiment.metric),
      withInterval(lift.relative, "percent"),
      pValue(lift.p_value),
      pValue(lift.sequential_p_value),
      ratio,
      power(lift),
    ]);
    if (experiment.interleaving) {
      const test = experiment.interleaving;
      lifts.push([`${test.b} vs ${test.a} (preference)`, withInterval(test.preference, "preference"),
        `${test.prefer_b} vs ${test.prefer_a} shoppers`, pValue(test.p_value), "–", "–", "–"]);
    }
    if (!lifts.length) lifts.push(["–", "–", "–", "–", "–", ratio, "–"]);
    const tr = row([...head, ...lifts[0]], experiment.sample_ratio_mismatch ? "mismatch" : "");
    rows.push(tr, ...lifts.slice(1).map((cells) => row(["", "", "", "", "", ...cells])));
  }
  fill("experiments", rows);
  $("experiments-note").textContent = "Each arm against the control on the experiment's metric, with the "
    + "95% interval; act on the sequential p-value, valid at every look. Power is the chance the "
    + `fixed-horizon test has now of detecting a ${(100 * figures.relative_mde).toFixed(0)}% relative lift `
    + "(without CUPED's reduction, so at least this); under it, the shoppers both arms need for 80%.";
  $("no-experiments").hidden = figures.experiments.length > 0;
}

function renderSearch() {
  const search = figures.search;
  const share = search.searches ? ` (${(100 * search.zero_result_searches / search.searches).toFixed(1)}%)` : "";
  $("search-summary").textContent =
    `${number(search.searches, "count")} searches, ${number(search.zero_result_searches, "count")} found nothing${share}.`;
  const none = (columns) => [row([element("td", "none", "note")].concat(Array(columns - 1).fill("")))];
  const table = (id, queries, cells, columns) =>
    fill(id, queries.length ? queries.map((q) => row([q.query || "(empty)", ...cells(q)])) : none(columns));
  table("top-queries", search.top_queries,
    (q) => [number(q.searches, "count"), number(q.users, "count"), number(q.clicks, "count"), number(q.ctr, "ctr")], 5);
  table("zero-result-queries", search.zero_result_queries,
    (q) => [number(q.zero_results, "count"), number(q.users, "count")], 3);
  table("no-click-queries", search.no_click_queries,
    (q) => [number(q.searches, "count"), number(q.users, "count")], 3);
  fill("positions", search.click_positions.map((p) => row([String(p.position), number(p.impressions, "count"),
    number(p.clicks, "count"), withInterval(p.ctr, "ctr")])));
  chart($("position-chart"), search.click_positions.map((p) => String(p.position)),
    [{ name: "CTR", values: search.click_positions.map((p) => p.ctr.value) }], "ctr");
}

// ------------------------------------------------------------------ charts
function renderDaily() {
  const metric = $("metric").value;
  const value = (day) => (metric === "impressions" ? day.impressions : day[metric].value);
  const placement = figures.placements.find((p) => p.placement === $("breakdown").value);
  const lines = placement
    ? placement.arms.map((arm) => ({
      name: arm.experiment === null ? "outside experiments" : `${arm.experiment} · ${arm.arm}`,
      values: arm.daily.map(value),
    }))
    : figures.placements.map((p) => ({ name: p.placement, values: p.daily.map(value) }));
  chart($("daily-chart"), figures.days.map((d) => d.slice(5)), lines, metric);
  $("daily-legend").replaceChildren(...lines.map((line, n) => element("li", line.name, `series-${n % SERIES_COLOURS}`)));
}

// A round step (1, 2 or 5 times a power of ten) of at least `rough`; whole for counts.
function tickStep(rough, whole) {
  if (!(rough > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  return whole ? Math.max(1, Math.ceil(step)) : step;
}

// A line chart of `lines` ({name, values}) over the x labels; null values break a line.
function chart(svg, labels, lines, metric) {
  const width = 760, height = 260, left = 64, right = 16, top = 12, bottom = 32;
  const known = lines.flatMap((line) => line.values).filter((v) => v !== null);
  const step = tickStep(Math.max(...known, 0) / 4, metric === "impressions");
  const highest = 4 * step;
  const x = (n) => left + (labels.length > 1 ? (n * (width - left - right)) / (labels.length - 1) : (width - left - right) / 2);
  const y = (v) => top + (height - top - bottom) * (1 - v / highest);
  const parts = [];
  for (let tick = 0; tick <= 4; tick++) {
    const v = step * tick;
    parts.push(svgElement("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
    parts.push(svgElement("text", { x: left - 6, y: y(v) + 4, class: "tick end" }, number(v, metric)));
  }
  const every = Math.max(1, Math.ceil(labels.length / 10));
  labels.forEach((label, n) => {
    if (n % every === 0 || n === labels.length - 1) {
      parts.push(svgElement("text", { x: x(n), y: height - bottom + 18, class: "tick middle" }, label));
    }
  });
  parts.push(svgElement("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), class: "axis" }));
  lines.forEach((line, index) => {
    const colour = `series-${index % SERIES_COLOURS}`;
    let run = [];
    const flush = () => {
      if (run.length > 1) parts.push(svgElement("polyline", { points: run.join(" "), class: `line ${colour}` }));
      run = [];
    };
    line.values.forEach((v, n) => {
      if (v === null) {
        flush();
        return;
      }
      run.push(`${x(n).toFixed(1)},${y(v).toFixed(1)}`);
      const dot = svgElement("circle", { cx: x(n), cy: y(v), r: 3, class: `dot ${colour}` });
      dot.append(svgElement("title", {}, `${line.name}, ${labels[n]}: ${number(v, metric)}`));
      parts.push(dot);
    });
    flush();
  });
  svg.replaceChildren(...parts);
}

function render() {
  const days = figures.days;
  $("period").textContent = `${days[0]} to ${days[days.length - 1]} (UTC), purchases credited within `
    + `${figures.attribution_hours} h; ${number(figures.anonymous_impressions, "count")} `
    + `${figures.anonymous_impressions === 1 ? "impression" : "impressions"} without a `
    + `shopper ${figures.anonymous_impressions === 1 ? "is" : "are"} not in the figures. Computed ${new Date(figures.generated * 1000).toISOString()}.`;
  renderPlacements();
  renderDaily();
  renderExperiments();
  renderSearch();
}

// ------------------------------------------------------------------ wiring
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  load();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  askForKey();
});
$("refresh").addEventListener("click", load);
$("days").addEventListener("change", () => { if (sessionStorage.getItem(KEY)) load(); });
$("metric").addEventListener("change", () => { if (figures) renderDaily(); });
$("breakdown").addEventListener("change", () => { if (figures) renderDaily(); });
load();
