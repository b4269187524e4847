/* Re-division proposals on the planner's map (geo-service, issue 20).
 *
 * The panel lists the stored proposals (GET /api/v1/grids/proposals); the one chosen (or the
 * one ?proposal=ID names) is drawn with its grids coloured by households against the range it
 * was asked for, beside today's grids coloured the same way (a toggle: proposal / today), with
 * its figures beside today's in a table. "Preview" asks what applying it would do (POST
 * .../apply with preview: true, nothing stored); "Apply" makes it one grid edit with the
 * reason given, and the grids layer is drawn again from the server.
 *
 * Hooks for tests on <body>: data-geomap-proposal (id shown), data-geomap-proposal-grids,
 * data-geomap-proposal-view (proposal | today), data-geomap-proposal-state (idle, busy,
 * preview, applied, error), data-geomap-proposal-applied (the edit's id).
 */
(function (GeoMap) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var BASE = "/api/v1/grids/proposals";
  // Households against the proposal's range: below the minimum, up to the target, up to the
  // maximum, above it.
  var CLASSES = [
    { zh: "低于下限", en: "below min", color: "#fee08b" },
    { zh: "下限至目标", en: "min to target", color: "#a6d96a" },
    { zh: "目标至上限", en: "target to max", color: "#1a9641" },
    { zh: "超过上限", en: "above max", color: "#d7191c" },
  ];

  function classOf(households, range) {
    if (households < range.min) return CLASSES[0];
    if (households <= range.target) return CLASSES[1];
    if (households <= range.max) return CLASSES[2];
    return CLASSES[3];
  }

  // The figures of a proposal and of today's grids, side by side: label, names ("/" joins
  // several in one cell).
  var ROWS = [
    ["网格数", "grids", "grids"],
    ["户数 最少/中位/最多", "households min / median / max", "households_min/households_median/households_max"],
    ["户数变异系数", "households CV", "households_cv"],
    ["超出范围的网格", "grids outside the range", "outside_range"],
    ["紧凑度 平均/最小", "Polsby-Popper mean / min", "polsby_popper_mean/polsby_popper_min"],
    ["不沿道路的边界（米）", "boundary off streets (m)", "boundary_off_street_m"],
    ["换网格 户/楼栋", "households / buildings changing grid", "households_moved/buildings_moved"],
    ["所需网格员", "workers needed", "workers_needed"],
  ];

  function figuresTable(f) {
    var head = "<tr><th></th><th>" + bi("方案", "proposal") + "</th><th>" + bi("现状", "today") + "</th></tr>";
    var rows = ROWS.map(function (r) {
      var cells = ["proposal", "today"].map(function (side) {
        return r[2].split("/").map(function (n) {
          return esc(GeoMap.fmt(f[side][n]));
        }).join(" / ");
      });
      return "<tr><td>" + bi(r[0], r[1]) + "</td><td><b>" + cells[0] + "</b></td><td>" + cells[1] + "</td></tr>";
    });
    return '<table class="gm-table gm-proposal-figures">' + head + rows.join("") + "</table>";
  }

  /** The proposals panel of the planner. `opts.today`: the layer group of today's grids as the
   * planner draws them (hidden while a proposal is compared), `opts.gridsPath`: the grids'
   * items, `opts.reload`: draw the grids again after an apply. */
  GeoMap.proposalPanel = async function (page, opts) {
    var map = page.map;
    var g = page.groups;
    var body = document.body;
    var box = page.section("proposal", "网格划分方案", "Re-division proposal");
    box.innerHTML =
      '<div class="gm-row"><select id="gm-proposal-pick"><option value="">' +
      bi("（选择方案）", "(choose a proposal)") + "</option></select></div>" +
      '<div class="gm-row" id="gm-proposal-views" hidden>' +
      '<label><input type="radio" name="gm-proposal-view" value="proposal" checked> ' + bi("方案", "Proposal") + "</label> " +
      '<label><input type="radio" name="gm-proposal-view" value="today"> ' + bi("现状", "Today") + "</label></div>" +
      '<div id="gm-proposal-figures"></div>' +
      '<div id="gm-proposal-apply" hidden>' +
      '<div class="gm-row"><input id="gm-proposal-reason" type="text" maxlength="500" placeholder="' +
      esc("原因 reason") + '"></div>' +
      '<div class="gm-row"><button id="gm-proposal-preview" type="button">' + bi("预览应用", "Preview") +
      '</button> <button id="gm-proposal-commit" type="button" disabled>' + bi("应用方案", "Apply") +
      "</button></div></div>" +
      '<div id="gm-proposal-result"></div>';
    var pick = box.querySelector("#gm-proposal-pick");
    var views = box.querySelector("#gm-proposal-views");
    var figuresBox = box.querySelector("#gm-proposal-figures");
    var applyBox = box.querySelector("#gm-proposal-apply");
    var reason = box.querySelector("#gm-proposal-reason");
    var previewBtn = box.querySelector("#gm-proposal-preview");
    var commitBtn = box.querySelector("#gm-proposal-commit");
    var resultBox = box.querySelector("#gm-proposal-result");
    var shown = null; // the proposal drawn
    var previewed = false;
    var legendShown = false;

    function state(s) {
      body.setAttribute("data-geomap-proposal-state", s);
    }

    function rangeOf(p) {
      return {
        min: p.params.min_households,
        target: p.params.target_households,
        max: p.params.max_households,
      };
    }

    function style(households, range) {
      return {
        color: "#333333",
        weight: 1,
        opacity: 0.9,
        fillColor: classOf(households, range).color,
        fillOpacity: 0.6,
      };
    }

    function tooltip(title, rows) {
      return '<div class="gm-popup-title">' + title + "</div>" + GeoMap.table(rows);
    }

    /** Which of the two is on the map: the proposal's grids or today's (the planner's own grid
     * layer hidden while comparing, so that the colours are the households' alone). */
    function view(which) {
      var on = which === "proposal" ? g.proposal : g.today;
      var off = which === "proposal" ? g.today : g.proposal;
      if (map.hasLayer(off)) map.removeLayer(off);
      if (!map.hasLayer(on)) map.addLayer(on);
      if (opts.today && map.hasLayer(opts.today)) map.removeLayer(opts.today);
      body.setAttribute("data-geomap-proposal-view", which);
    }

    async function drawToday(p) {
      var range = rangeOf(p);
      var communities = Object.keys(p.figures.communities || {});
      var got = await Promise.all([
        page.items(opts.gridsPath, { fresh: true }),
        page.get("/api/v1/workload?by=grid", undefined, { fresh: true }),
      ]);
      var households = {};
      (got[1].items || []).forEach(function (it) {
        households[it.code] = it.households;
      });
      g.today.clearLayers();
      var mine = got[0].features.filter(function (f) {
        return communities.indexOf(f.properties.community_code) >= 0;
      });
      page.geoJSON({ type: "FeatureCollection", features: mine }, {
        style: function (f) {
          return style(households[f.id] || 0, range);
        },
        onEachFeature: function (f, layer) {
          layer.bindTooltip(tooltip(bi("现有网格", "Today's grid"), [
            [bi("网格", "Grid"), esc(f.properties.name || f.id) + " · " + esc(f.id)],
            [bi("户数", "Households"), esc(GeoMap.fmt(households[f.id] || 0))],
          ]), { sticky: true, className: "gm-hover-tip" });
        },
      }).addTo(g.today);
      page.counts.today = mine.length; // drawn again after an apply: the count of now
    }

    async function show(id) {
      g.proposal.clearLayers();
      g.today.clearLayers();
      figuresBox.innerHTML = "";
      resultBox.innerHTML = "";
      commitBtn.disabled = true;
      previewed = false;
      body.removeAttribute("data-geomap-proposal");
      if (!id) {
        shown = null;
        views.hidden = true;
        applyBox.hidden = true;
        [g.proposal, g.today].forEach(function (layer) {
          if (map.hasLayer(layer)) map.removeLayer(layer);
        });
        if (opts.today && !map.hasLayer(opts.today)) map.addLayer(opts.today);
        return;
      }
      state("busy");
      page.status(bi("读取方案…", "Reading the proposal…"));
      var p = await page.get(BASE + "/" + encodeURIComponent(id), undefined, { fresh: true });
      shown = p;
      var range = rangeOf(p);
      var drawn = page.geoJSON(p.grids, {
        style: function (f) {
          return style(f.properties.households, range);
        },
        onEachFeature: function (f, layer) {
          var pr = f.properties;
          layer.bindTooltip(tooltip(bi("方案网格", "Proposed grid"), [
            [bi("网格", "Grid"), esc(pr.name) + " · " + esc(pr.code)],
            [bi("户数", "Households"), esc(GeoMap.fmt(pr.households))],
            [bi("楼栋", "Buildings"), esc(GeoMap.fmt(pr.buildings))],
            [bi("紧凑度", "Polsby-Popper"), esc(GeoMap.fmt(pr.polsby_popper))],
          ]), { sticky: true, className: "gm-hover-tip" });
        },
      }).addTo(g.proposal);
      page.counts.proposal = p.grids.features.length;
      await drawToday(p);
      if (!legendShown) {
        page.legend.section("方案与现状网格户数", "Households per grid (proposal and today)",
          CLASSES.map(function (c) {
            return { zh: c.zh, en: c.en, color: c.color };
          }));
        legendShown = true;
      }
      var scopes = Object.keys(p.figures.communities || {});
      var f = scopes.length === 1 ? p.figures.communities[scopes[0]] : p.figures.all;
      var html = '<div class="gm-note">#' + esc(p.id) + " · " + esc(p.params.method) + " · " +
        bi("目标", "target") + " " + esc(range.target) + " (" + esc(range.min) + "–" + esc(range.max) + ") " +
        bi("户", "households") + " · " + esc(scopes.join(", ")) + "</div>" + figuresTable(f);
      (p.notes || []).forEach(function (n) {
        html += '<div class="gm-note">' + esc(n.community) + ": " + esc(n.note) + "</div>";
      });
      if (p.applied) {
        html += '<div class="gm-note">' + bi("已应用", "Applied") + ": #" + esc(p.applied.edit) +
          " (" + esc(p.applied.actor) + ")</div>";
      }
      figuresBox.innerHTML = html;
      views.hidden = false;
      applyBox.hidden = !!p.applied || p.status !== "done";
      box.querySelector("input[value=proposal]").checked = true;
      view("proposal");
      if (drawn.getBounds().isValid()) page.fitBounds(drawn.getBounds());
      body.setAttribute("data-geomap-proposal", String(p.id));
      body.setAttribute("data-geomap-proposal-grids", String(p.grids.features.length));
      page.status(bi("方案已加载", "Proposal loaded"), "ok");
      state("idle");
    }

    function answerHtml(a) {
      var head = a.preview ? bi("预览", "Preview") : bi("已应用", "Applied") + " #" + esc(a.edit);
      var rows = [
        [bi("新建", "Created"), esc(GeoMap.fmt(a.created.length))],
        [bi("改变", "Changed"), esc(GeoMap.fmt(a.changed.length))],
        [bi("撤销", "Retired"), esc(GeoMap.fmt(a.retired.length))],
        [bi("换网格", "Moved"), esc(GeoMap.fmt(a.buildings_moved)) + " 楼栋 buildings · " +
          esc(GeoMap.fmt(a.households_moved)) + " 户 hh · " + esc(GeoMap.fmt(a.incidents_moved)) + " 事件 incidents"],
        [bi("网格员", "Workers"), esc(GeoMap.fmt(Object.keys(a.workers_moved || {}).length)) + " " +
          bi("调动", "moved") + " · " + esc(GeoMap.fmt(Object.keys(a.workers_added || {}).length)) + " " +
          bi("兼管新网格", "serve new grids as well")],
      ];
      var html = '<div class="gm-section-title">' + head + "</div>" + GeoMap.table(rows);
      (a.findings || []).forEach(function (x) {
        html += '<div class="gm-warn">' + esc(x.message) + "</div>";
      });
      var warnings = a.warnings || [];
      if (warnings.length) {
        html += '<div class="gm-warn">' + esc(GeoMap.fmt(warnings.length)) + " " +
          bi("个网格尚无网格员", "grids have no worker yet") + ": " +
          warnings.slice(0, 5).map(function (w) {
            return esc(w.grid);
          }).join(", ") + (warnings.length > 5 ? " …" : "") + "</div>";
      }
      return html;
    }

    function refused(err) {
      var details = err && err.body && err.body.details;
      var html = '<div class="gm-warn">' + esc(err.status ? err.status + ": " : "") + esc(err.message) + "</div>";
      ((details && details.findings) || []).slice(0, 10).forEach(function (x) {
        html += '<div class="gm-note">' + esc(x.message) + "</div>";
      });
      resultBox.innerHTML = html;
      body.setAttribute("data-geomap-proposal-error", err.message);
      page.status(bi("方案未应用", "Proposal not applied"), "error");
      state("error");
    }

    function send(preview) {
      var why = reason.value.trim();
      if (!preview && !why) {
        resultBox.innerHTML = '<div class="gm-warn">' + bi("请先填写原因（记入网格历史）", "Give a reason first (the grids' history keeps it)") + "</div>";
        reason.focus();
        return Promise.resolve();
      }
      state("busy");
      commitBtn.disabled = true;
      page.status(preview ? bi("预览中…", "Previewing…") : bi("应用中…", "Applying…"));
      return page.request("POST", BASE + "/" + encodeURIComponent(shown.id) + "/apply", {
        reason: why || "预览 preview",
        preview: preview,
      });
    }

    previewBtn.addEventListener("click", function () {
      if (!shown) return;
      send(true).then(function (a) {
        if (!a) return;
        resultBox.innerHTML = answerHtml(a);
        previewed = !(a.findings && a.findings.length);
        commitBtn.disabled = !previewed;
        body.setAttribute("data-geomap-proposal-preview", String(a.grids.length));
        page.status(bi("预览完成", "Preview ready"), "ok");
        state("preview");
      }).catch(refused);
    });

    commitBtn.addEventListener("click", function () {
      if (!shown || !previewed) return;
      send(false).then(async function (a) {
        if (!a) return;
        resultBox.innerHTML = answerHtml(a);
        reason.value = "";
        applyBox.hidden = true;
        if (opts.reload) await opts.reload();
        await drawToday(shown);
        view("today");
        box.querySelector("input[value=today]").checked = true;
        body.setAttribute("data-geomap-proposal-applied", String(a.edit));
        page.status(bi("方案已应用", "Proposal applied") + " #" + esc(a.edit), "ok");
        state("applied");
      }).catch(refused);
    });

    views.addEventListener("change", function (e) {
      if (e.target && e.target.name === "gm-proposal-view") view(e.target.value);
    });
    pick.addEventListener("change", function () {
      show(pick.value).catch(function (err) {
        page.fail(err, "proposal " + pick.value);
        state("error");
      });
    });

    var list = await page.get(BASE + "?limit=50");
    (list.items || []).forEach(function (p) {
      var o = document.createElement("option");
      o.value = String(p.id);
      var where = p.params.communities ? p.params.communities.join(", ") : bi("全市", "whole city");
      o.textContent = "#" + p.id + " · " + where + " · " + (p.grids != null ? p.grids + " 网格 grids" : p.status) +
        (p.applied_edit ? " · " + bi("已应用", "applied") : "");
      pick.appendChild(o);
    });
    if (!(list.items || []).length) {
      figuresBox.innerHTML = '<div class="gm-note">' + bi("尚无方案", "No proposal yet") +
        ": <code>geo-service grids propose</code></div>";
    }
    var asked = new URLSearchParams(window.location.search).get("proposal");
    if (asked) {
      pick.value = asked;
      await show(asked);
    }
    state("idle");
  };
})(window.GeoMap);
