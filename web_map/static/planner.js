/* Planner view: coverage share of households per grid (choropleth), walking tiers, gaps,
 * centres; a click on the map runs a what-if with a centre added there; a button asks for
 * suggested sites; "edit grids" splits, merges and redraws grids (previewed, then committed
 * with a reason) and shows the grids as they were; the workload overlay colours grids by
 * households per worker against the city's standard. Data: OGC API Features (geometry,
 * styles) + /api/v1/coverage/* + /api/v1/grids/* + /api/v1/workload. */
(function (GeoMap) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  // Share of households within the widest tier: classes and colours (light red -> green).
  var CLASSES = [
    { min: 0.0, color: "#d7191c", zh: "< 20%", en: "< 20%" },
    { min: 0.2, color: "#fdae61", zh: "20–40%", en: "20–40%" },
    { min: 0.4, color: "#ffffbf", zh: "40–60%", en: "40–60%" },
    { min: 0.6, color: "#a6d96a", zh: "60–80%", en: "60–80%" },
    { min: 0.8, color: "#1a9641", zh: "≥ 80%", en: "≥ 80%" },
  ];
  var NO_DATA = "#bdbdbd";

  function classOf(share) {
    if (share === null || share === undefined) return null;
    var found = CLASSES[0];
    CLASSES.forEach(function (c) {
      if (share >= c.min) found = c;
    });
    return found;
  }

  function widest(fig) {
    var tiers = (fig && fig.tiers) || [];
    return tiers.length ? tiers[tiers.length - 1] : null;
  }

  function tierRows(fig) {
    return (fig.tiers || []).map(function (t) {
      return [
        bi(t.tier_min + " 分钟内", "within " + t.tier_min + " min"),
        esc(GeoMap.fmt(t.households)) + " 户 hh (" + GeoMap.pct(t.household_share) + ")",
      ];
    });
  }

  function siteIcon(text, cls) {
    return L.divIcon({
      className: "gm-site " + cls,
      html: "<span>" + esc(text) + "</span>",
      iconSize: [26, 26],
      iconAnchor: [13, 13],
    });
  }

  // -- grid editing ---------------------------------------------------------------------------
  // Split, merge and redraw through the grid-edit API (/api/v1/grids/...). Every edit is first
  // sent with preview: true (the server answers what would change and stores nothing): the
  // resulting grids are outlined and labelled, findings and warnings listed; "commit" sends it
  // again with the planner's reason, then the grids layer is asked again. Drawing the split
  // line and dragging a grid's vertices are Leaflet-Geoman's (vendored; loaded when editing is
  // turned on). "As of" outlines the grids as they were at a moment (the grids' OGC items take
  // as_of=) and one of them in detail (GET /api/v1/grids/{code}?as_of=).
  var EDIT = {
    selected: { color: "#1f78b4", weight: 4, opacity: 1, fill: false, interactive: false },
    result: {
      color: "#6a3d9a",
      weight: 3,
      opacity: 1,
      fillColor: "#cab2d6",
      fillOpacity: 0.35,
      interactive: false,
    },
    committed: { color: "#6a3d9a", weight: 3, opacity: 1, fill: false, interactive: false },
    refused: {
      color: "#b00020",
      weight: 3,
      opacity: 1,
      dashArray: "6 4",
      fillColor: "#ff8a80",
      fillOpacity: 0.2,
      interactive: false,
    },
    line: { color: "#e31a1c", weight: 3, opacity: 1, dashArray: "8 6", interactive: false },
    past: { color: "#111111", weight: 3, opacity: 0.9, dashArray: "3 6", fill: false, interactive: false },
    pastAll: { color: "#111111", weight: 1.5, opacity: 0.8, dashArray: "2 5", fill: false, interactive: false },
    shape: { color: "#1f78b4", weight: 3, fillColor: "#a6cee3", fillOpacity: 0.15, pmIgnore: false },
  };
  var KIND = { split: ["切分", "split"], merge: ["合并", "merge"], redraw: ["改边界", "redraw"] };
  // Geoman's hints while drawing, in both languages like the rest of the page.
  var GEOMAN_LANG = {
    tooltips: {
      firstVertex: "单击放置起点 Click to place the first point",
      continueLine: "单击继续 Click to continue the line",
      finishLine: "再次单击最后一点结束 Click the last point again to finish",
    },
    actions: { finish: "完成 Finish", cancel: "取消 Cancel", removeLastVertex: "删除最后一点 Remove last point" },
  };

  function workersOf(grid) {
    return (grid.workers || []).map(function (w) {
      return typeof w === "string" ? w : w.code || w.name;
    });
  }

  /** The value of a datetime-local input (the browser's own time) for an instant. */
  function localInput(when) {
    var d = new Date(when);
    function two(n) {
      return (n < 10 ? "0" : "") + n;
    }
    return (
      d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + "T" +
      two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds())
    );
  }

  function gridPath(code, tail) {
    return "/api/v1/grids/" + encodeURIComponent(code) + (tail || "");
  }

  /** The "edit grids" mode of the planner. `grids`: features() (the grids drawn now),
   * itemsPath (their OGC items), restyle() (the choropleth, dimmed while editing), reload()
   * (the grids again, after an edit). Returns {active()}. */
  function gridEditor(page, grids) {
    var map = page.map;
    var body = document.body;
    var box = page.section("edit", "网格编辑", "Grid editing");
    box.innerHTML =
      '<div class="gm-row"><button id="gm-edit-toggle" type="button">' + bi("编辑网格", "Edit grids") +
      "</button></div>" +
      '<div id="gm-edit-tools" class="gm-edit" hidden>' +
      '<div id="gm-edit-selected"></div>' +
      '<div class="gm-row gm-edit-buttons">' +
      '<button id="gm-split" type="button" disabled>' + bi("切分", "Split") + "</button>" +
      '<button id="gm-merge" type="button" disabled>' + bi("合并", "Merge") + "</button>" +
      '<button id="gm-redraw" type="button" disabled>' + bi("改边界", "Redraw") + "</button>" +
      "</div>" +
      '<div id="gm-neighbours-row" class="gm-row" hidden><label>' + bi("相邻网格", "Neighbours") +
      ' <select id="gm-neighbours"><option value="adjust">随之调整 adjust</option>' +
      '<option value="strict">保持不变 strict</option></select></label></div>' +
      '<div id="gm-edit-hint" class="gm-note"></div>' +
      '<label class="gm-field">' + bi("原因", "Reason") +
      ' <input id="gm-reason" type="text" maxlength="500" placeholder="例如：新建小区 e.g. new estate"></label>' +
      '<div class="gm-row"><button id="gm-commit" type="button" disabled>' + bi("提交", "Commit") +
      '</button> <button id="gm-cancel" type="button">' + bi("取消", "Cancel") + "</button></div>" +
      '<div id="gm-edit-result"></div>' +
      '<div class="gm-section-title gm-edit-asof">' + bi("历史状态", "As of") + "</div>" +
      '<div class="gm-row gm-asof-row"><input id="gm-asof-code" type="text" maxlength="64" ' +
      'placeholder="网格编码 grid code" aria-label="grid code">' +
      '<input id="gm-asof" type="datetime-local" step="1" aria-label="as of (local time)"></div>' +
      '<div class="gm-row"><button id="gm-asof-show" type="button">' + bi("查看", "Show") + "</button> " +
      '<button id="gm-asof-clear" type="button">' + bi("清除", "Clear") + "</button></div>" +
      '<div id="gm-asof-result"></div>' +
      "</div>";

    function $(id) {
      return document.getElementById(id);
    }
    var toggle = $("gm-edit-toggle");
    var tools = $("gm-edit-tools");
    var selectedBox = $("gm-edit-selected");
    var splitBtn = $("gm-split");
    var mergeBtn = $("gm-merge");
    var redrawBtn = $("gm-redraw");
    var neighbours = $("gm-neighbours");
    var neighboursRow = $("gm-neighbours-row");
    var hintBox = $("gm-edit-hint");
    var reason = $("gm-reason");
    var commitBtn = $("gm-commit");
    var cancelBtn = $("gm-cancel");
    var resultBox = $("gm-edit-result");
    var asofCode = $("gm-asof-code");
    var asof = $("gm-asof");
    var asofBox = $("gm-asof-result");

    var on = false;
    var selected = []; // [{code, feature, detail}] in the order clicked
    var mode = null; // null | "split" (drawing the line) | "redraw" (vertices editable)
    var pending = null; // the request last previewed without findings: what "commit" sends
    var seq = 0; // an answer to an older request than the last is dropped
    var shape = null; // the grid's editable polygon while redrawing
    var original = {}; // "lat,lng" on the map -> [lon, lat] as the API gave it
    var layers = {
      selected: L.featureGroup(),
      result: L.featureGroup(),
      drawn: L.featureGroup(),
      findings: L.featureGroup(),
      past: L.featureGroup(),
    };
    var legendShown = false;

    function state(s) {
      body.setAttribute("data-geomap-edit", s);
    }
    function hint(html) {
      hintBox.innerHTML = html || "";
    }

    // -- geoman, once ------------------------------------------------------------------------
    function setUpGeoman() {
      if (map.pm) return;
      // Only the layers this editor makes editable (pmIgnore: false) are Geoman's: the
      // planner's own layers are neither edited nor snapped to.
      L.PM.setOptIn(true);
      map.options.pmIgnore = false;
      L.PM.reInitLayer(map); // the map was made before Geoman was loaded
      // A language of its own name ("zh_en" would resolve to, and overwrite, Geoman's "zh").
      map.pm.setLang("geo-service-bilingual", GEOMAN_LANG, "en");
      map.pm.setGlobalOptions({ snappable: false, allowSelfIntersection: false });
      map.on("pm:create", onDrawn);
    }

    // -- on and off -----------------------------------------------------------------------------
    async function start() {
      toggle.disabled = true;
      hint(bi("加载编辑工具…", "Loading the editing tools…"));
      tools.hidden = false;
      try {
        await page.plugin("geoman");
        setUpGeoman();
      } catch (err) {
        toggle.disabled = false;
        showError(err);
        return;
      }
      on = true;
      toggle.disabled = false;
      toggle.innerHTML = bi("结束编辑", "Stop editing");
      toggle.classList.add("gm-on");
      page.panel._div.classList.add("gm-editing");
      map.getContainer().classList.add("gm-map-editing");
      Object.keys(layers).forEach(function (k) {
        layers[k].addTo(map);
      });
      if (!map.hasLayer(page.groups.coverage)) map.addLayer(page.groups.coverage);
      if (map.boxZoom) map.boxZoom.disable(); // shift-click adds a grid, not a zoom box
      if (!asof.value) asof.value = localInput(Date.now());
      grids.restyle();
      if (!legendShown) {
        legendShown = true;
        page.legend.section("网格编辑", "Grid editing", [
          { zh: "所选网格", en: "selected", color: "transparent", border: "#1f78b4" },
          { zh: "编辑结果", en: "result of the edit", color: "#cab2d6", border: "#6a3d9a" },
          { zh: "切分线", en: "split line", color: "#e31a1c", kind: "line" },
          { zh: "问题位置", en: "finding", color: "#b00020", kind: "dot" },
          { zh: "历史形状", en: "as it was", color: "#111111", kind: "line" },
        ]);
      }
      hint("");
      showSelected();
      state("ready");
      body.setAttribute("data-geomap-editing", "1");
    }

    function stop() {
      endMode();
      select([]);
      clearResult();
      layers.past.clearLayers();
      asofBox.innerHTML = "";
      Object.keys(layers).forEach(function (k) {
        map.removeLayer(layers[k]);
      });
      on = false;
      toggle.innerHTML = bi("编辑网格", "Edit grids");
      toggle.classList.remove("gm-on");
      tools.hidden = true;
      page.panel._div.classList.remove("gm-editing");
      map.getContainer().classList.remove("gm-map-editing");
      if (map.boxZoom) map.boxZoom.enable();
      grids.restyle();
      body.removeAttribute("data-geomap-editing");
      state("off");
    }

    toggle.addEventListener("click", function () {
      if (on) stop();
      else start();
    });

    // -- selection ------------------------------------------------------------------------------
    function featureOf(code) {
      return (grids.features().features || []).filter(function (f) {
        return f.id === code;
      })[0];
    }

    function boundsOf(geometry) {
      return page.geoJSON(geometry).getBounds();
    }

    /** Bring a grid close (room around it to draw beyond its edges), then `done` once the map
     * stands still (a click during the zoom would land elsewhere). */
    function closeTo(geometry, done) {
      map.once("moveend", done);
      page.fitBounds(boundsOf(geometry).pad(0.25), 19);
    }

    function select(codes) {
      endMode();
      clearResult();
      var known = {};
      selected.forEach(function (s) {
        known[s.code] = s;
      });
      selected = codes.map(function (c) {
        return known[c] || { code: c, feature: featureOf(c), detail: null };
      });
      layers.selected.clearLayers();
      selected.forEach(function (s) {
        if (s.feature) page.geoJSON(s.feature, { style: EDIT.selected, interactive: false }).addTo(layers.selected);
      });
      if (codes.length === 1) {
        asofCode.value = codes[0];
      }
      showSelected();
      selected.forEach(function (s) {
        if (s.detail || s.loading) return;
        s.loading = page
          .get(gridPath(s.code), undefined, { fresh: true })
          .then(function (detail) {
            s.detail = detail;
            if (selected.indexOf(s) >= 0) showSelected();
          })
          .catch(function (err) {
            s.loading = null;
            showError(err);
          });
      });
    }

    function showSelected() {
      var ready = selected.every(function (s) {
        return s.detail;
      });
      if (!selected.length) {
        selectedBox.innerHTML =
          '<div class="gm-note">' +
          bi("单击网格选择，Shift+单击多选（合并）", "Click a grid to select it; shift-click to add more (merge)") +
          "</div>";
      } else if (selected.length === 1) {
        var d = selected[0].detail || {};
        var loading = '<span class="gm-note">…</span>';
        selectedBox.innerHTML = GeoMap.table([
          [
            bi("网格", "Grid"),
            (d.name ? "<b>" + esc(d.name) + "</b>" : loading) + '<br><span class="gm-code">' +
              bi("编码", "code") + " " + esc(selected[0].code) + " · " + bi("版本", "version") + " " +
              (d.version ? esc(d.version) : "…") + "</span>",
          ],
          [bi("户数", "Households"), d.households !== undefined ? esc(GeoMap.fmt(d.households)) : loading],
          [bi("网格员", "Workers"), d.workers ? esc(workersOf(d).join(", ") || "—") : loading],
        ]);
      } else {
        selectedBox.innerHTML =
          '<div class="gm-note">' + bi("已选 " + selected.length + " 个网格", selected.length + " grids selected") + "</div>" +
          gridTable(
            selected.map(function (s) {
              return Object.assign({ code: s.code }, s.detail || {});
            })
          );
      }
      body.setAttribute(
        "data-geomap-selected-grids",
        ready
          ? selected
              .map(function (s) {
                return s.code;
              })
              .join(",")
          : ""
      );
      buttons();
    }

    function buttons() {
      var ready =
        selected.length &&
        selected.every(function (s) {
          return s.detail;
        });
      splitBtn.disabled = !(ready && selected.length === 1 && !mode);
      redrawBtn.disabled = !(ready && selected.length === 1 && !mode);
      mergeBtn.disabled = !(ready && selected.length >= 2 && !mode);
      commitBtn.disabled = !pending;
    }

    map.on("click", function (e) {
      if (!on || mode) return; // while drawing or dragging vertices, clicks are Geoman's
      var p = page.fromLatLng(e.latlng);
      var hit = (grids.features().features || []).filter(function (f) {
        return GeoMap.contains(f.geometry, p[0], p[1]);
      })[0];
      var adding = e.originalEvent && e.originalEvent.shiftKey;
      var codes = selected.map(function (s) {
        return s.code;
      });
      if (!hit) {
        if (!adding) select([]);
        return;
      }
      if (adding) {
        var at = codes.indexOf(hit.id);
        if (at >= 0) codes.splice(at, 1);
        else codes.push(hit.id);
      } else {
        codes = [hit.id];
      }
      select(codes);
    });

    // -- showing an answer ----------------------------------------------------------------------
    function gridTable(list, created) {
      return (
        '<table class="gm-table gm-grid-table"><tr><th>' + bi("网格", "Grid") + "</th><th>" +
        bi("户", "hh") + "</th><th>" + bi("网格员", "Workers") + "</th></tr>" +
        list
          .map(function (g) {
            var w = g.workers ? workersOf(g) : null;
            return (
              "<tr><td>" + esc(g.name || "") + '<br><span class="gm-code">' + esc(g.code) +
              (g.version ? " · v" + esc(g.version) : "") + "</span>" +
              ((created || []).indexOf(g.code) >= 0 ? ' <span class="gm-tag">' + bi("新", "new") + "</span>" : "") +
              "</td><td>" +
              (g.households !== undefined ? esc(GeoMap.fmt(g.households)) : "…") + "</td><td>" +
              (w ? esc(w.join(", ") || "—") : "…") + "</td></tr>"
            );
          })
          .join("") +
        "</table>"
      );
    }

    function label(g) {
      var w = workersOf(g);
      return (
        "<b>" + esc(g.name || g.code) + '</b><br><span class="gm-code">' + esc(g.code) + "</span><br>" +
        esc(GeoMap.fmt(g.households)) + " 户 hh<br>" + w.length + " 网格员 " +
        (w.length === 1 ? "worker" : "workers")
      );
    }

    function outline(list, style, labelled) {
      var group = L.featureGroup();
      (list || []).forEach(function (g) {
        if (!g.geometry) return;
        var layer = page.geoJSON(g.geometry, { style: style, interactive: false });
        if (labelled) {
          layer.eachLayer(function (l) {
            l.bindTooltip(label(g), {
              permanent: true,
              direction: "center",
              className: "gm-label gm-edit-label",
            });
          });
        }
        layer.addTo(group);
      });
      return group.addTo(layers.result);
    }

    function mark(lon, lat, message) {
      L.circleMarker(page.toLatLng(lon, lat), {
        radius: 9,
        color: "#ffffff",
        weight: 2,
        fillColor: "#b00020",
        fillOpacity: 0.95,
        className: "gm-finding",
        interactive: true,
      })
        .bindTooltip(esc(message), { className: "gm-finding-tip" })
        .addTo(layers.findings);
    }

    function findingsHtml(findings) {
      return (findings || [])
        .map(function (f) {
          if (typeof f.lon === "number" && typeof f.lat === "number") mark(f.lon, f.lat, f.message);
          return '<div class="gm-error">' + esc(f.message) + "</div>";
        })
        .join("");
    }

    function codes(list) {
      return list && list.length ? list.map(esc).join(", ") : "—";
    }

    function showAnswer(answer, req) {
      layers.result.clearLayers();
      layers.findings.clearLayers();
      var k = KIND[answer.kind] || [answer.kind, answer.kind];
      var head = answer.preview
        ? bi("预览", "Preview") + ": " + bi(k[0], k[1])
        : bi("已提交", "Committed") + ": " + bi(k[0], k[1]) + " #" + esc(answer.edit);
      var html = '<div class="gm-section-title">' + head + "</div>";
      var rows = [];
      if (answer.retired && answer.retired.length) rows.push([bi("撤销", "Retired"), codes(answer.retired)]);
      rows.push([
        bi("换网格", "Moved"),
        esc(GeoMap.fmt(answer.buildings_moved)) + " 楼栋 buildings · " +
          esc(GeoMap.fmt(answer.households_moved)) + " 户 hh · " +
          esc(GeoMap.fmt(answer.incidents_moved)) + " 事件 incidents",
      ]);
      html += GeoMap.table(rows);
      html += gridTable(answer.grids || [], answer.created || []);
      html += findingsHtml(answer.findings);
      (answer.warnings || []).forEach(function (w) {
        html += '<div class="gm-warn">' + esc(w.message || w) + "</div>";
      });
      if (answer.preview) {
        html += '<div class="gm-note">' + (answer.findings && answer.findings.length
          ? bi("有问题，不能提交", "It cannot be committed: see the findings")
          : bi("填写原因后提交", "Give a reason, then commit")) + "</div>";
      }
      resultBox.innerHTML = html;
      // A committed edit's grids: outlines only, over the grids layer as the server now has it.
      var drawn = outline(answer.grids, answer.preview ? EDIT.result : EDIT.committed, true);
      if (shape) shape.bringToFront();
      body.setAttribute(
        "data-geomap-edit-grids",
        (answer.grids || [])
          .map(function (g) {
            return g.code;
          })
          .join(",")
      );
      return drawn;
    }

    function showError(err) {
      var msg = err && err.message ? err.message : String(err);
      var details = (err && err.body && err.body.details) || {};
      layers.result.clearLayers();
      layers.findings.clearLayers();
      var refused = err && err.status === 409;
      var html =
        '<div class="gm-section-title gm-error">' +
        (refused ? bi("被拒绝", "Refused") : bi("未能完成", "Not done")) +
        (err && err.status ? " (" + err.status + ")" : "") + "</div>";
      if (details.findings && details.findings.length) {
        html += findingsHtml(details.findings);
      } else {
        html += '<div class="gm-error">' + esc(msg) + "</div>";
        GeoMap.placesIn(msg).forEach(function (p) {
          mark(p[0], p[1], msg);
        });
      }
      if (details.grids) outline(details.grids, EDIT.refused, true);
      if (shape) shape.bringToFront();
      resultBox.innerHTML = html;
      page.status(bi("编辑未完成", "Edit not done"), "error");
      body.setAttribute("data-geomap-edit-error", msg);
      state("error");
    }

    function clearResult() {
      pending = null;
      seq++;
      layers.result.clearLayers();
      layers.drawn.clearLayers();
      layers.findings.clearLayers();
      resultBox.innerHTML = "";
      body.removeAttribute("data-geomap-edit-grids");
      buttons();
    }

    // -- preview and commit -----------------------------------------------------------------
    /** Ask the server what `req` would do (preview: true); a clean answer can be committed. */
    function preview(req, fit) {
      var mine = ++seq;
      pending = null;
      buttons();
      state("busy");
      hint(bi("预览中…", "Previewing…"));
      var sent = Object.assign({}, req.body, {
        reason: reason.value.trim() || "预览 preview",
        preview: true,
      });
      page
        .request(req.method, req.path, sent)
        .then(function (answer) {
          if (mine !== seq) return;
          hint("");
          var drawn = showAnswer(answer, req);
          if (!(answer.findings && answer.findings.length)) pending = req;
          buttons();
          if (fit && drawn.getBounds().isValid() && !map.getBounds().contains(drawn.getBounds())) {
            page.fitBounds(drawn.getBounds().pad(0.3));
          }
          page.status(bi("预览完成", "Preview ready"), "ok");
          state("preview");
        })
        .catch(function (err) {
          if (mine !== seq) return;
          hint("");
          showError(err);
        });
    }

    commitBtn.addEventListener("click", function () {
      var why = reason.value.trim();
      if (!why) {
        hint('<span class="gm-warn">' + bi("请先填写原因（记入网格历史）", "Give a reason first (the grids' history keeps it)") + "</span>");
        reason.focus();
        state("need-reason");
        return;
      }
      if (!pending) return;
      var req = pending;
      var mine = ++seq;
      pending = null;
      buttons();
      state("busy");
      hint(bi("提交中…", "Committing…"));
      page
        .request(req.method, req.path, Object.assign({}, req.body, { reason: why, preview: false }))
        .then(async function (answer) {
          if (mine !== seq) return;
          endMode();
          layers.drawn.clearLayers();
          selected = [];
          layers.selected.clearLayers();
          showSelected();
          showAnswer(answer, req);
          hint(bi("网格图层刷新中…", "Refreshing the grids…"));
          await grids.reload();
          reason.value = "";
          hint("");
          page.status(bi("已提交编辑", "Edit committed") + " #" + esc(answer.edit), "ok");
          body.setAttribute("data-geomap-edit-committed", String(answer.edit));
          state("committed");
        })
        .catch(function (err) {
          if (mine !== seq) return;
          hint("");
          showError(err);
        });
    });

    cancelBtn.addEventListener("click", function () {
      endMode();
      clearResult();
      hint("");
      state("ready");
    });

    /** Leave drawing or vertex editing (the selection stays). */
    function endMode() {
      if (map.pm) map.pm.disableDraw();
      if (shape) {
        shape.pm.disable();
        map.removeLayer(shape);
        shape = null;
        map.addLayer(layers.selected);
      }
      neighboursRow.hidden = true;
      mode = null;
      buttons();
    }

    // -- split: a line drawn across the selected grid -----------------------------------------------
    splitBtn.addEventListener("click", function () {
      var s = selected[0];
      endMode();
      clearResult();
      mode = "split";
      buttons();
      hint(bi("画一条穿过网格的线：在网格外单击起点，在另一侧网格外单击终点，再单击终点结束",
        "Draw a line across the grid: click outside it, click outside its other side, then click that last point again to finish"));
      map.pm.enableDraw("Line", {
        snappable: false,
        templineStyle: { color: "#e31a1c", weight: 3 },
        hintlineStyle: { color: "#e31a1c", weight: 2, dashArray: "5 5" },
        pathOptions: { color: "#e31a1c", weight: 3 },
      });
      closeTo(s.detail.geometry, function () {
        if (mode === "split") state("drawing");
      });
    });

    function onDrawn(e) {
      map.removeLayer(e.layer); // Geoman's copy; the line is kept in our own layer below
      if (mode !== "split" || e.shape !== "Line" || selected.length !== 1) return;
      mode = null;
      var s = selected[0];
      var coords = e.layer.getLatLngs().map(function (ll) {
        return page.fromLatLng(ll);
      });
      layers.drawn.clearLayers();
      L.polyline(e.layer.getLatLngs(), EDIT.line).addTo(layers.drawn);
      buttons();
      preview(
        {
          kind: "split",
          method: "POST",
          path: gridPath(s.code, "/split"),
          body: { line: { type: "LineString", coordinates: coords }, version: s.detail.version },
        },
        true
      );
    }

    // -- merge: the selected grids into one ---------------------------------------------------------
    mergeBtn.addEventListener("click", function () {
      endMode();
      clearResult();
      var versions = {};
      selected.forEach(function (s) {
        versions[s.code] = s.detail.version;
      });
      preview(
        {
          kind: "merge",
          method: "POST",
          path: "/api/v1/grids/merge",
          body: {
            codes: selected.map(function (s) {
              return s.code;
            }),
            versions: versions,
          },
        },
        true
      );
    });

    // -- redraw: drag the grid's vertices (a shared one: the neighbours follow) -----------------
    function ringsOf(geometry) {
      function ring(r) {
        return r.map(function (c) {
          var ll = page.toLatLng(c[0], c[1]);
          original[ll.lat + "," + ll.lng] = [c[0], c[1]];
          return ll;
        });
      }
      original = {};
      if (geometry.type === "Polygon") return geometry.coordinates.map(ring);
      return geometry.coordinates.map(function (p) {
        return p.map(ring);
      });
    }

    /** The edited polygon as GeoJSON in WGS-84: vertices not moved keep the API's own numbers
     * (no round trip through a shifted basemap's CRS), moved ones are read off the map. */
    function shapeGeometry() {
      var gj = shape.toGeoJSON(false).geometry; // false: the map's numbers, not rounded
      function back(c) {
        return original[c[1] + "," + c[0]] || page.fromLatLng(L.latLng(c[1], c[0]));
      }
      function ring(r) {
        return r.map(back);
      }
      gj.coordinates =
        gj.type === "Polygon"
          ? gj.coordinates.map(ring)
          : gj.coordinates.map(function (p) {
              return p.map(ring);
            });
      return gj;
    }

    function previewRedraw() {
      var s = selected[0];
      if (mode !== "redraw" || !shape || !s) return;
      preview(
        {
          kind: "redraw",
          method: "PUT",
          path: gridPath(s.code, "/geometry"),
          body: { geometry: shapeGeometry(), neighbours: neighbours.value, version: s.detail.version },
        },
        false
      );
    }

    redrawBtn.addEventListener("click", function () {
      var s = selected[0];
      endMode();
      clearResult();
      mode = "redraw";
      buttons();
      map.removeLayer(layers.selected);
      shape = L.polygon(ringsOf(s.detail.geometry), EDIT.shape).addTo(map);
      shape.pm.enable({ allowSelfIntersection: false, snappable: false, draggable: false });
      shape.on("pm:edit", previewRedraw);
      neighboursRow.hidden = false;
      hint(bi("拖动顶点，松开后预览；单击边的中点可加点，右键单击顶点可删点",
        "Drag a vertex: on release the map previews the new shape. Click a midpoint to add a vertex, right-click a vertex to remove it"));
      closeTo(s.detail.geometry, function () {
        if (mode === "redraw") state("redrawing");
      });
    });

    neighbours.addEventListener("change", function () {
      if (mode === "redraw" && (pending || resultBox.innerHTML)) previewRedraw();
    });

    // -- as of: the grids as they were, and one of them in detail --------------------------------
    function showAsOf() {
      var code = asofCode.value.trim();
      var at = new Date(asof.value); // the browser's local time, sent with its offset (UTC)
      if (!asof.value || isNaN(at.getTime())) {
        asofBox.innerHTML = '<div class="gm-warn">' + bi("请选择时间", "Choose a moment") + "</div>";
        return;
      }
      var when = encodeURIComponent(at.toISOString());
      layers.past.clearLayers();
      body.setAttribute("data-geomap-asof", "busy");
      var fresh = { fresh: true };
      var one = code
        ? page.get(gridPath(code, "?as_of=" + when), undefined, fresh).catch(function (err) {
            return { error: err };
          })
        : Promise.resolve(null);
      Promise.all([page.items(grids.itemsPath + "&as_of=" + when, fresh), one])
        .then(function (got) {
          var then = got[0];
          var g = got[1];
          page.geoJSON(then, { style: EDIT.pastAll, interactive: false }).addTo(layers.past);
          var html =
            '<div class="gm-note">' +
            bi("虚线：当时的网格边界（" + then.features.length + " 个网格，现有 " +
              grids.features().features.length + " 个）",
              "Dashed: the grids then (" + then.features.length + "; " +
              grids.features().features.length + " now)") +
            "</div>";
          if (g && g.error) {
            html += '<div class="gm-error">' + esc(g.error.message || String(g.error)) + "</div>";
          } else if (g) {
            page.geoJSON(g.geometry, { style: EDIT.past, interactive: false }).addTo(layers.past);
            html += GeoMap.table([
              [bi("网格", "Grid"), esc(g.name || "") + '<br><span class="gm-code">' + esc(g.code) +
                " · v" + esc(g.version) + "</span>"],
              [bi("有效期", "Valid"), esc(GeoMap.fmt(g.valid_from)) + " – " +
                (g.valid_to ? esc(GeoMap.fmt(g.valid_to)) : bi("至今", "now"))],
              [bi("面积", "Area"), esc(GeoMap.fmt(Math.round(g.area_m2))) + " m²"],
            ]);
          }
          asofBox.innerHTML = html;
          body.setAttribute("data-geomap-asof-grids", String(then.features.length));
          body.setAttribute("data-geomap-asof", !g ? "layer" : g.error ? "none" : g.code + "@" + g.version);
        })
        .catch(function (err) {
          asofBox.innerHTML = '<div class="gm-error">' + esc(err.message || String(err)) + "</div>";
          body.setAttribute("data-geomap-asof", "error");
        });
    }

    $("gm-asof-show").addEventListener("click", showAsOf);
    $("gm-asof-clear").addEventListener("click", function () {
      layers.past.clearLayers();
      asofBox.innerHTML = "";
      body.removeAttribute("data-geomap-asof");
      body.removeAttribute("data-geomap-asof-grids");
    });

    return {
      active: function () {
        return on;
      },
    };
  }

  // -- workload: households per worker against the city's standard ---------------------------
  // GET /api/v1/workload?by=grid (asked when the overlay is first shown, again after a grid
  // edit): each grid coloured by its households per worker as a share of the standard the city
  // sets (GEO_GRID_TARGET_HOUSEHOLDS, the answer's target_households_per_worker). Exactly at the
  // standard is not over it (the API's over_target is households_per_worker > target).
  var WORKLOAD = [
    { upTo: 0.5, open: true, color: "#2c7bb6", en: "< 50%" },
    { upTo: 0.8, open: true, color: "#abd9e9", en: "50–80%" },
    { upTo: 1.0, open: false, color: "#ffffbf", en: "80–100%" },
    { upTo: 1.2, open: false, color: "#fdae61", en: "100–120%" },
    { upTo: Infinity, open: false, color: "#d7191c", en: "> 120%" },
  ];
  var NO_WORKER = "#7b3294";

  function workloadClass(item, target) {
    if (!item) return null;
    var hpw = item.households_per_worker;
    if (hpw === null || hpw === undefined || !item.workers) return { color: NO_WORKER, none: true };
    var r = hpw / target;
    for (var i = 0; i < WORKLOAD.length; i++) {
      var c = WORKLOAD[i];
      if (c.open ? r < c.upTo : r <= c.upTo) return c;
    }
    return WORKLOAD[WORKLOAD.length - 1];
  }

  /** The workload overlay. `opts`: group (its Leaflet group), source (the API path),
   * box (its panel section, hidden while the overlay is off), features() (the grids drawn
   * now), editing() (whether grid editing is on: dimmed, and clicks pass through to the
   * editor), order() (the grid fills below the outlines again). Returns {refresh, restyle}. */
  function workloadLayer(page, opts) {
    var map = page.map;
    var body = document.body;
    var box = opts.box;
    var section = box.parentNode;
    var answer = null;
    var byCode = {};
    var drawn = null;
    var legendEl = null;
    var stale = true;
    var seq = 0;
    var loads = 0;
    section.hidden = true;

    function shown() {
      return map.hasLayer(opts.group);
    }

    function target() {
      return answer.target_households_per_worker;
    }

    function style(f) {
      var c = workloadClass(byCode[f.id], target());
      return {
        color: "#444444",
        weight: 0.8,
        opacity: 0.85,
        fillColor: c ? c.color : NO_DATA,
        fillOpacity: opts.editing() ? 0.25 : 0.7,
      };
    }

    function popupHtml(f) {
      var it = byCode[f.id];
      var head = '<div class="gm-popup-title">' + bi("网格工作量", "Workload") + "</div>";
      if (!it) {
        return '<div class="gm-popup">' + head + GeoMap.table([
          [bi("网格", "Grid"), esc(f.properties.name || "") + '<br><span class="gm-code">' + esc(f.id) + "</span>"],
          [bi("工作量", "Workload"), bi("暂无数据", "no figures yet")],
        ]) + "</div>";
      }
      var hpw = it.households_per_worker;
      var ofTarget = hpw === null || hpw === undefined ? null : hpw / target();
      var codes = it.worker_codes || [];
      return (
        '<div class="gm-popup gm-workload-popup" data-code="' + esc(it.code) + '" data-hpw="' +
        esc(hpw === null || hpw === undefined ? "" : hpw) + '">' + head +
        GeoMap.table([
          [bi("网格", "Grid"), "<b>" + esc(it.name || "") + '</b><br><span class="gm-code">' + esc(it.code) +
            (it.community_name ? " · " + esc(it.community_name) : "") + "</span>"],
          [bi("户数", "Households"), esc(GeoMap.fmt(it.households)) + " 户 hh · " +
            esc(GeoMap.fmt(it.buildings)) + " 楼栋 buildings"],
          [bi("网格员", "Workers"), esc(GeoMap.fmt(it.workers)) +
            (codes.length ? ' <span class="gm-code">(' + codes.map(esc).join(", ") + ")</span>" : "")],
          [bi("户/人", "Households per worker"), ofTarget === null
            ? '<b class="gm-workload-hpw">—</b> ' + bi("无网格员", "no worker")
            : '<b class="gm-workload-hpw">' + esc(GeoMap.fmt(hpw)) + "</b> (" +
              Math.round(ofTarget * 100) + "% " + bi("标准", "of standard") + ")"],
          [bi("未结事件", "Open incidents"), esc(GeoMap.fmt(it.open_incidents))],
          [bi("超期", "Overdue"), it.overdue
            ? '<span class="gm-overdue">' + esc(GeoMap.fmt(it.overdue)) + "</span>"
            : esc(GeoMap.fmt(it.overdue))],
        ]) + "</div>"
      );
    }

    function legend() {
      if (legendEl) legendEl.remove();
      var t = target();
      function n(share) {
        return GeoMap.fmt(Math.round(t * share * 10) / 10);
      }
      var bounds = [
        "< " + n(0.5), n(0.5) + "–" + n(0.8), n(0.8) + "–" + n(1), n(1) + "–" + n(1.2), "> " + n(1.2),
      ];
      legendEl = page.legend.section(
        "网格工作量（标准 " + GeoMap.fmt(t) + " 户/人）",
        "Households per worker (standard " + GeoMap.fmt(t) + ")",
        WORKLOAD.map(function (c, i) {
          return { zh: bounds[i] + " 户/人", en: c.en, color: c.color };
        }).concat([{ zh: "无网格员", en: "no worker", color: NO_WORKER }])
      );
      legendEl.id = "gm-legend-workload";
      // First, under the legend's head: the layer just turned on is the one looked at.
      var div = page.legend._div;
      div.insertBefore(legendEl, div.children[1] || null);
      legendEl.hidden = !shown();
    }

    function summary() {
      var city = answer.city || {};
      var items = answer.items || [];
      var over = items.filter(function (it) {
        return it.over_target;
      }).length;
      var none = items.filter(function (it) {
        return !it.workers;
      }).length;
      var t = GeoMap.fmt(target());
      var csv = "";
      if (page.cfg.interactive) {
        var href = page.cfg.api + opts.source + (opts.source.indexOf("?") >= 0 ? "&" : "?") + "format=csv";
        if (page.token) href += "&access_token=" + encodeURIComponent(page.token);
        csv = '<div class="gm-row"><a id="gm-workload-csv" class="gm-link" href="' + esc(href) +
          '" download="workload-grid.csv">' + bi("下载表格", "Download CSV") + "</a></div>";
      }
      box.innerHTML =
        '<div class="gm-note"><b>' + bi("标准 " + t + " 户/人", "standard " + t + " hh/worker") + "</b> · " +
        bi("中位", "median") + " " + esc(GeoMap.fmt(city.median)) + " · " + bi("最高", "max") + " " +
        esc(GeoMap.fmt(city.max)) + "</div>" +
        '<div class="gm-note" id="gm-workload-imbalance">' + bi("不均衡", "Imbalance") + ": " +
        bi("变异系数", "CV") + " <b>" + esc(GeoMap.fmt(city.cv)) + "</b> · " +
        bi("最高/中位", "max/median") + " <b>" + esc(GeoMap.fmt(city.max_over_median)) + "</b></div>" +
        '<div class="gm-note">' + bi("超标", "Over") + " " + over + "/" + items.length + " " +
        bi("个网格", "grids") + (none ? " · " + bi("无网格员", "no worker") + " " + none : "") + "</div>" +
        (page.cfg.interactive
          ? '<div class="gm-note">' + bi("单击网格看其工作量（关闭此图层可单击做情景分析）",
              "Click a grid for its workload (turn this layer off to click for a what-if)") + "</div>"
          : "") +
        csv;
    }

    function draw() {
      opts.group.clearLayers();
      var fc = opts.features();
      drawn = page.geoJSON(fc, {
        style: style,
        className: "gm-workload",
        bubblingMouseEvents: false, // a click shows the grid's workload, not a what-if
        onEachFeature: function (f, layer) {
          layer.bindPopup(function () {
            return popupHtml(f);
          }, { minWidth: 260, maxWidth: 340 });
        },
      });
      drawn.addTo(opts.group);
      opts.order();
      var coloured = fc.features.filter(function (f) {
        return byCode[f.id];
      }).length;
      page.counts.workload = fc.features.length;
      body.setAttribute("data-geomap-workload", String(coloured));
    }

    /** Ask for the figures (again) and draw them; never rejects (an error is told in the
     * panel's section), so that a grid edit's refresh does not fail for it. */
    async function load(fresh) {
      var mine = ++seq;
      stale = false;
      body.setAttribute("data-geomap-workload-busy", "1");
      try {
        var got = await page.get(opts.source, undefined, fresh ? { fresh: true } : undefined);
        if (mine !== seq) return;
        answer = got;
        byCode = {};
        (answer.items || []).forEach(function (it) {
          byCode[it.code] = it;
        });
        summary();
        legend();
        draw();
        loads += 1;
        body.setAttribute("data-geomap-workload-loaded", String(loads));
      } catch (err) {
        if (mine !== seq) return;
        stale = true;
        box.innerHTML = '<div class="gm-error">' + bi("工作量未能加载", "Workload not loaded") + ": " +
          esc(err && err.message ? err.message : String(err)) + "</div>";
        body.setAttribute("data-geomap-workload-error", err && err.message ? err.message : String(err));
      } finally {
        if (mine === seq) body.removeAttribute("data-geomap-workload-busy");
      }
    }

    map.on("overlayadd", function (e) {
      if (e.layer !== opts.group) return;
      section.hidden = false;
      if (legendEl) legendEl.hidden = false;
      if (stale || !answer) load(answer !== null);
      else opts.order();
    });
    map.on("overlayremove", function (e) {
      if (e.layer !== opts.group) return;
      section.hidden = true;
      if (legendEl) legendEl.hidden = true;
    });

    if (shown()) {
      section.hidden = false;
      load(false);
    }

    return {
      /** After a grid edit: asked again now if shown, else when next shown. */
      refresh: function () {
        if (shown()) return load(true);
        stale = true;
        return Promise.resolve();
      },
      restyle: function () {
        if (drawn) drawn.setStyle(style);
      },
      bringToBack: function () {
        if (drawn && shown()) drawn.bringToBack();
      },
    };
  }

  GeoMap.views.planner = async function (page) {
    var S = page.cfg.sources;
    var g = page.groups;
    var map = page.map;

    var summaryBox = page.section("summary", "全市覆盖", "City-wide coverage");
    var workloadBox = page.section("workload", "网格工作量", "Workload");
    var actions = page.section("actions", "情景分析与选址", "What-if and siting");
    var whatIfBox = page.section("whatif");
    var suggestBox = page.section("suggest");

    // Metadata (styles, titles, extents) and figures first; coverage may not be computed yet.
    var docs = await page.catalogue();
    var gridsDoc = docs.grids;
    var tiersDoc = docs.coverage_tiers || null;
    var gapsDoc = docs.coverage_gaps || null;
    var communitiesDoc = docs.communities;
    var centersDoc = docs.centers;
    await page.missing([
      GeoMap.need("grids", "按网格的覆盖率需要网格", "coverage per grid needs them"),
      GeoMap.need("communities", "社区边界与分社区变化需要社区", "community outlines and the change per community need them"),
      GeoMap.need("centers", "覆盖从中心起算", "coverage is measured from them"),
      GeoMap.need("streets", "步行沿道路计算", "walks follow them"),
      GeoMap.need("buildings", "户数来自楼栋", "households are counted from them"),
    ]);
    var coverage = null;
    var summary = null;
    try {
      var got = await Promise.all([page.get(S.figures), page.get(S.summary)]);
      coverage = got[0];
      summary = got[1];
    } catch (err) {
      if (!(err instanceof GeoMap.ApiError) || err.status !== 404) throw err;
      summaryBox.innerHTML =
        '<div class="gm-warn">' +
        bi("尚未计算覆盖", "Coverage not computed yet") +
        ": <code>geo-service coverage compute</code></div>";
    }

    var share = {};
    var figuresOf = {};
    takeFigures(coverage);
    if (summary) {
      var w = widest(summary.city);
      var html = '<div class="gm-big">' + GeoMap.pct(w && w.household_share) + "</div>";
      html += '<div class="gm-note">' + bi("户数在 " + (w ? w.tier_min : "") + " 分钟步行内",
        "of households within " + (w ? w.tier_min : "") + " min walk") + "</div>";
      html += GeoMap.table(tierRows(summary.city));
      if (summary.stale) {
        html += '<div class="gm-warn">' + bi("数据已变更，结果过期", "Stale: data changed since") + "</div>";
      }
      summaryBox.innerHTML = html;
    }

    // Geometry.
    var layers = await Promise.all([
      page.items(S.grids),
      tiersDoc ? page.items(S.tiers) : null,
      gapsDoc ? page.items(S.gaps) : null,
      page.items(S.communities),
      page.items(S.centers),
    ]);

    var maxTier = summary ? widest(summary.city).tier_min : 15;
    var gridsNow = layers[0];
    var editing = { active: function () { return false; } };
    var choropleth = null;
    var gapsLayer = null;

    function gridStyle(f) {
      var c = classOf(share[f.id]);
      return {
        color: "#555555",
        weight: 0.8,
        opacity: 0.8,
        fillColor: c ? c.color : NO_DATA,
        fillOpacity: editing.active() ? 0.3 : 0.55, // outlines of an edit stand out
      };
    }

    /** The choropleth of the grids (again after an edit: new codes, new figures). */
    function drawGrids(fc) {
      gridsNow = fc;
      g.coverage.clearLayers();
      choropleth = page.geoJSON(fc, {
        style: gridStyle,
        onEachFeature: function (f, layer) {
          var fig = figuresOf[f.id];
          var rows = [
            [GeoMap.fieldTitle(gridsDoc, "name"), esc(GeoMap.fmt(f.properties.name))],
            [GeoMap.fieldTitle(gridsDoc, "code"), esc(f.id)],
          ];
          if (fig) {
            rows.push([bi("户数", "Households"), esc(GeoMap.fmt(fig.households))]);
            rows = rows.concat(tierRows(fig));
          }
          layer.bindTooltip(
            '<div class="gm-popup-title">' + bi("网格", "Grid") + "</div>" + GeoMap.table(rows),
            { sticky: true, className: "gm-hover-tip" }
          );
        },
      });
      choropleth.addTo(g.coverage);
      choropleth.bringToBack();
      page.counts.coverage = fc.features.length;
      var loads = Number(document.body.getAttribute("data-geomap-grids-loaded") || 0) + 1;
      document.body.setAttribute("data-geomap-grids-loaded", String(loads));
    }

    function takeFigures(answer) {
      share = {};
      figuresOf = {};
      ((answer && answer.items) || []).forEach(function (it) {
        var w = widest(it);
        share[it.code] = w ? w.household_share : null;
        figuresOf[it.code] = it;
      });
    }

    /** The grids and their figures again from the server (an edit changed them). */
    async function reloadGrids() {
      var fresh = { fresh: true };
      var got = await Promise.all([
        page.items(S.grids, fresh),
        summary ? page.get(S.figures, undefined, fresh) : null,
      ]);
      if (summary) takeFigures(got[1]);
      drawGrids(got[0]);
      await workload.refresh(); // its figures follow the edit too, if it is shown
    }

    drawGrids(layers[0]);

    var workload = workloadLayer(page, {
      group: g.workload,
      source: S.workload,
      box: workloadBox,
      features: function () {
        return gridsNow;
      },
      editing: function () {
        return editing.active();
      },
      order: orderGrids,
    });

    /** The fills under the outlines (tiers, communities): coverage lowest, then the gaps,
     * then the workload (its popups take the clicks on the grids it covers). */
    function orderGrids() {
      workload.bringToBack();
      if (gapsLayer && map.hasLayer(g.gaps)) gapsLayer.bringToBack();
      if (choropleth && map.hasLayer(g.coverage)) choropleth.bringToBack();
    }
    map.on("overlayadd", orderGrids); // a fill turned on again comes back on top otherwise

    if (layers[1] && tiersDoc) {
      var tiers = layers[1].features.slice().sort(function (a, b) {
        return b.properties.tier_min - a.properties.tier_min;
      });
      page.geoJSON({ type: "FeatureCollection", features: tiers }, {
        interactive: false,
        style: function (f) {
          return {
            color: GeoMap.colourOf(tiersDoc.style, f.properties),
            weight: 2.5,
            dashArray: f.properties.tier_min === maxTier ? null : "6 4",
            fill: false,
          };
        },
      }).addTo(g.tiers);
      page.count("tiers", tiers.length);
    }
    if (layers[2] && gapsDoc) {
      gapsLayer = page.geoJSON(layers[2], {
        style: function (f) {
          var st = GeoMap.pathStyle(gapsDoc.style, f.properties);
          st.weight = 1.5;
          st.fillOpacity = 0.7;
          return st;
        },
        onEachFeature: function (f, layer) {
          layer.bindTooltip(GeoMap.popup(gapsDoc, f.properties), {
            sticky: true,
            className: "gm-hover-tip",
          });
        },
      }).addTo(g.gaps);
      page.count("gaps", layers[2].features.length);
    }
    page.geoJSON(layers[3], {
      interactive: false,
      style: function (f) {
        return GeoMap.pathStyle(communitiesDoc.style, f.properties);
      },
    }).addTo(g.communities);
    page.count("communities", layers[3].features.length);
    layers[4].features.forEach(function (f) {
      GeoMap.circle(page, centersDoc.style, f, { bubblingMouseEvents: false })
        .bindPopup(GeoMap.popup(centersDoc, f.properties))
        .bindTooltip(esc(f.properties.name || f.id), {
          permanent: true,
          direction: "right",
          offset: [8, 0],
          className: "gm-label",
        })
        .addTo(g.centers);
    });
    page.count("centers", layers[4].features.length);

    // Legend.
    page.legend.section("户数覆盖率（" + maxTier + " 分钟）", "Households within " + maxTier + " min",
      CLASSES.map(function (c) {
        return { zh: c.zh, en: "", color: c.color };
      }).concat([{ zh: "无楼栋", en: "no buildings", color: NO_DATA }]));
    if (tiersDoc) GeoMap.legendOf(page.legend, tiersDoc, "ring");
    if (gapsDoc) GeoMap.legendOf(page.legend, gapsDoc);
    GeoMap.legendOf(page.legend, communitiesDoc, "line");
    GeoMap.legendOf(page.legend, centersDoc, "dot");
    page.legend.section("情景分析", "What-if / siting", [
      { zh: "新增中心", en: "added centre", color: "#6a3d9a", kind: "dot" },
      { zh: "建议选址", en: "suggested site", color: "#ff7f00", kind: "dot" },
    ]);

    await page.fitCity();

    // What-if and suggestions need the live API.
    if (!page.cfg.interactive) {
      actions.innerHTML = '<div class="gm-note">' +
        bi("静态导出：情景分析与选址需在线地图", "Static export: what-if and siting need the live map") + "</div>";
      page.status(bi("已加载", "Loaded"), "ok");
      page.ready();
      return;
    }
    editing = gridEditor(page, {
      features: function () {
        return gridsNow;
      },
      itemsPath: S.grids,
      restyle: function () {
        if (choropleth) choropleth.setStyle(gridStyle);
        workload.restyle();
      },
      reload: reloadGrids,
    });
    GeoMap.proposalPanel(page, {
      today: g.coverage,
      gridsPath: S.grids,
      reload: reloadGrids,
    }).catch(function (err) {
      page.fail(err, "proposals");
    });
    if (docs.campaign_buildings) {
      var campaignBox = page.section("campaign", "走访进度", "Campaign progress");
      GeoMap.campaignOverlay(page, g.campaign, campaignBox, docs.campaign_buildings).catch(function (err) {
        page.fail(err, "campaigns");
      });
    }
    if (!summary) {
      actions.innerHTML = '<div class="gm-note">' + bi("先计算覆盖", "Compute coverage first") + "</div>";
      page.status(bi("已加载", "Loaded"), "ok");
      page.ready();
      return;
    }
    actions.innerHTML =
      '<div class="gm-note">' + bi("点击地图添加一个中心，查看覆盖变化", "Click the map to add a centre there and see the change") + "</div>" +
      '<div class="gm-row"><label>' + bi("选址数", "Sites") +
      ' <select id="gm-k"><option>1</option><option>2</option><option selected>3</option><option>5</option></select></label>' +
      ' <button id="gm-suggest" type="button">' + bi("建议选址", "Suggest sites") + "</button>" +
      ' <button id="gm-clear" type="button">' + bi("清除", "Clear") + "</button></div>";

    var added = [];

    function showWhatIf(answer) {
      var rows = answer.city.before.tiers.map(function (t, i) {
        var after = answer.city.after.tiers[i];
        var change = answer.city.change[i];
        return [
          bi(t.tier_min + " 分钟内", "within " + t.tier_min + " min"),
          GeoMap.pct(t.household_share) + " → <b>" + GeoMap.pct(after.household_share) + "</b> (+" +
            esc(GeoMap.fmt(change.households)) + " 户 hh)",
        ];
      });
      var changed = answer.communities.filter(function (c) {
        return c.changed;
      });
      var html = '<div class="gm-section-title">' + bi("情景分析结果", "What-if result") + " (" +
        added.length + " " + bi("个新增中心", "centres added") + ")</div>" + GeoMap.table(rows);
      if (changed.length) {
        html += '<div class="gm-note">' + bi("受益社区", "Communities gaining") + ": " +
          changed.map(function (c) {
            return esc(c.name || c.code);
          }).join("、") + "</div>";
      }
      (answer.warnings || []).forEach(function (w) {
        html += '<div class="gm-warn">' + esc(w) + "</div>";
      });
      whatIfBox.innerHTML = html;
    }

    var markers = []; // one per added centre, draggable
    var runs = 0;

    async function runWhatIf() {
      page.status(bi("计算中…", "Computing…"));
      var answer = await page.get("/api/v1/coverage/what-if", {
        add: added.map(function (p) {
          return { lon: p[0], lat: p[1] };
        }),
      });
      answer.added.forEach(function (a, i) {
        if (!markers[i]) return; // cleared meanwhile
        markers[i].unbindTooltip().bindTooltip(bi("新增中心", "Added centre") + " " + (i + 1) +
          (a.on_network ? "" : " — " + bi("离道路过远", "too far from a street")) + " · " +
          bi("可拖动", "drag to move"));
      });
      page.count("whatif", 1);
      showWhatIf(answer);
      page.status(bi("情景分析完成", "What-if done"), "ok");
      runs += 1;
      document.body.setAttribute("data-geomap-whatif", String(added.length));
      document.body.setAttribute("data-geomap-whatif-runs", String(runs));
    }

    // One what-if at a time: while a centre is dragged, each answer asks again for where the
    // centre is by then, so the figures follow the drag as fast as the server answers.
    var inFlight = false;
    var again = false;
    function whatIfNow() {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      runWhatIf().catch(function (err) {
        page.fail(err, "what-if");
      }).then(function () {
        inFlight = false;
        if (again) {
          again = false;
          whatIfNow();
        }
      });
    }

    function addCentre(latlng) {
      var i = markers.length;
      added.push(page.fromLatLng(latlng));
      var marker = L.marker(latlng, {
        icon: siteIcon("+" + (i + 1), "gm-site-whatif"),
        draggable: true,
        autoPan: true,
      }).addTo(g.whatif);
      function moved() {
        added[i] = page.fromLatLng(marker.getLatLng());
        whatIfNow();
      }
      marker.on("drag", moved);
      marker.on("dragend", moved);
      markers.push(marker);
      whatIfNow();
    }

    map.on("click", function (e) {
      if (editing.active()) return; // a click picks a grid while editing
      addCentre(e.latlng);
    });

    document.getElementById("gm-clear").addEventListener("click", function () {
      added = [];
      markers = [];
      g.whatif.clearLayers();
      g.suggested.clearLayers();
      whatIfBox.innerHTML = "";
      suggestBox.innerHTML = "";
    });

    document.getElementById("gm-suggest").addEventListener("click", function () {
      var k = document.getElementById("gm-k").value;
      page.status(bi("选址计算中…", "Finding sites…"));
      page.get("/api/v1/coverage/suggest?k=" + encodeURIComponent(k)).then(function (answer) {
        g.suggested.clearLayers();
        var markers = answer.sites.map(function (s) {
          return L.marker(page.toLatLng(s.lon, s.lat), { icon: siteIcon(String(s.rank), "gm-site-suggested") })
            .bindTooltip(bi("建议选址", "Suggested site") + " " + s.rank + ": +" +
              esc(GeoMap.fmt(s.households_gained)) + " 户 hh")
            .addTo(g.suggested);
        });
        var rows = answer.sites.map(function (s) {
          return ["#" + s.rank, "+" + esc(GeoMap.fmt(s.households_gained)) + " 户 hh · " +
            s.lon.toFixed(5) + ", " + s.lat.toFixed(5)];
        });
        suggestBox.innerHTML = '<div class="gm-section-title">' + bi("建议选址", "Suggested sites") +
          " (k=" + answer.k + ")</div>" + GeoMap.table(rows) + '<div class="gm-note">' +
          bi("新增覆盖户数", "Households gained") + ": <b>" + esc(GeoMap.fmt(answer.households_gained)) +
          "</b> · " + esc(answer.method) + (answer.optimal ? " (optimal)" :
            answer.upper_bound_households != null ? " (" + bi("最多可能", "at most") + " " +
              esc(GeoMap.fmt(Math.round(answer.upper_bound_households))) + " 户 hh)" : "") + "</div>";
        page.count("suggested", markers.length);
        page.status(bi("选址完成", "Sites found"), "ok");
        document.body.setAttribute("data-geomap-suggested", String(markers.length));
      }).catch(function (err) {
        page.fail(err, "suggest");
      });
    });

    page.status(bi("已加载", "Loaded"), "ok");
    page.ready();
  };
})(window.GeoMap);
