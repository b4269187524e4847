/* Dispatcher view: located incidents coloured by status, overdue ones ringed, refreshed every
 * few seconds; a click on an incident shows its grid and the grid's workers.
 * Data: OGC API Features (incidents with status/overdue, grids, styles) + /api/v1/incidents. */
(function (GeoMap) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var OVERDUE = "#e41a1c";

  function labelOf(doc, status) {
    var e = (doc.style.legend || []).filter(function (l) {
      return l.value === status;
    })[0];
    return e ? bi(e.label.zh, e.label.en) : esc(status);
  }

  GeoMap.views.dispatcher = async function (page) {
    var g = page.groups;
    var cfg = page.cfg;
    var S = cfg.sources;
    var counts = page.section("counts", "事件概况", "Incidents now");
    var control = page.section("refresh");
    var detail = page.section("detail");

    var docs = await Promise.all([page.get(S.incidents_doc), page.get(S.grids_doc)]);
    var incidentsDoc = docs[0];
    var gridsDoc = docs[1];
    var style = incidentsDoc.style;

    var grids = await page.items(S.grids);
    var gridById = {};
    var gridLayer = page.geoJSON(grids, {
      style: { color: gridsDoc.style.color, weight: 0.8, opacity: 0.7, fillColor: gridsDoc.style.fill, fillOpacity: 0.08 },
      onEachFeature: function (f, layer) {
        gridById[f.id] = f;
        layer.bindTooltip(esc(f.properties.name || f.id) + " " + esc(f.id), { sticky: true });
      },
    }).addTo(g.grids);
    page.count("grids", grids.features.length);

    GeoMap.legendOf(page.legend, incidentsDoc, "dot");
    page.legend.section("督办", "Supervision", [
      { zh: "超期", en: "overdue", color: OVERDUE, kind: "ring" },
    ]);
    page.legend.section(gridsDoc.titles.zh, gridsDoc.titles.en, [
      { zh: "网格", en: "grid", color: gridsDoc.style.fill, border: gridsDoc.style.color },
      { zh: "所选事件网格", en: "grid of the selected incident", color: "#ffff99", border: "#ff7f00" },
    ]);
    page.fit([gridLayer]);

    var selected = null;

    function showIncident(ref, layer, latlng) {
      page.get("/api/v1/incidents/" + encodeURIComponent(ref)).then(function (inc) {
        selected = ref;
        g.selected.clearLayers();
        var grid = inc.grid_code ? gridById[inc.grid_code] : null;
        if (grid) {
          page.geoJSON(grid, { interactive: false, style: { color: "#ff7f00", weight: 3, fillColor: "#ffff99", fillOpacity: 0.35 } })
            .addTo(g.selected);
          g.incidents.eachLayer(function (l) {
            l.bringToFront();
          });
        }
        var workers = (inc.workers || []).map(function (w) {
          return esc(w.name) + (w.phone ? " " + esc(w.phone) : "") + " (" + esc(w.code) + ")";
        }).join("<br>") || "—";
        var rows = [
          [bi("编号", "Reference"), esc(inc.ref)],
          [bi("类别", "Category"), inc.category_name ? bi(inc.category_name.zh, inc.category_name.en) : esc(inc.category)],
          [bi("状态", "Status"), labelOf(incidentsDoc, inc.status) + (inc.overdue ? ' <b class="gm-overdue">' + bi("超期", "overdue") + "</b>" : "")],
          [bi("网格", "Grid"), esc(GeoMap.fmt(inc.grid_name)) + " " + esc(GeoMap.fmt(inc.grid_code))],
          [bi("社区", "Community"), esc(GeoMap.fmt(inc.community_name))],
          [bi("网格员", "Grid workers"), workers],
          [bi("受理时间", "Received"), esc(GeoMap.fmt(inc.received_at))],
          [bi("办理时限", "Due"), esc(GeoMap.fmt(inc.due_at))],
        ];
        if (inc.near_boundary) rows.push([bi("靠近网格边界", "Near a grid boundary"), esc(GeoMap.fmt(true))]);
        var html = '<div class="gm-popup"><div class="gm-popup-title">' + bi("网格事件", "Incident") + "</div>" + GeoMap.table(rows) + "</div>";
        // The panel holds the detail: a popup would cover the neighbouring incidents.
        detail.innerHTML = html;
        if (!page.map.getBounds().contains(latlng)) page.map.panTo(latlng);
        document.body.setAttribute("data-geomap-selected", ref);
      }).catch(function (err) {
        page.fail(err, "incident " + ref);
      });
    }

    async function refresh() {
      var fc = await page.items(S.incidents);
      g.incidents.clearLayers();
      var byStatus = {};
      var overdue = 0;
      // Overdue last, so that their rings are drawn on top.
      fc.features.sort(function (a, b) {
        return (a.properties.overdue ? 1 : 0) - (b.properties.overdue ? 1 : 0);
      });
      fc.features.forEach(function (f) {
        var p = f.properties;
        byStatus[p.status] = (byStatus[p.status] || 0) + 1;
        if (p.overdue) overdue += 1;
        var marker = GeoMap.circle(page, style, f, p.overdue
          ? { color: OVERDUE, weight: 4, radius: style.radius + 3, bubblingMouseEvents: false }
          : { color: "#ffffff", weight: 1.5, bubblingMouseEvents: false });
        marker.bindTooltip(esc(p.ref) + " · " + labelOf(incidentsDoc, p.status) + (p.overdue ? " · " + bi("超期", "overdue") : ""));
        marker.on("click", function (e) {
          showIncident(p.ref, marker, e.latlng);
        });
        marker.addTo(g.incidents);
      });
      page.counts.incidents = fc.features.length;
      var rows = (style.legend || []).filter(function (l) {
        return byStatus[l.value];
      }).map(function (l) {
        return ['<span class="gm-swatch gm-swatch-dot" style="background:' + l.color + '"></span>' + bi(l.label.zh, l.label.en), esc(GeoMap.fmt(byStatus[l.value]))];
      });
      rows.push(['<span class="gm-swatch gm-swatch-ring" style="border-color:' + OVERDUE + '"></span>' + bi("超期", "Overdue"), "<b>" + esc(GeoMap.fmt(overdue)) + "</b>"]);
      var waiting = null;
      if (cfg.interactive) {
        try {
          waiting = (await page.get("/api/v1/incidents?status=needs_location&limit=1")).total;
        } catch (err) {
          waiting = null;
        }
      }
      if (waiting) rows.push([bi("待定位（未上图）", "Needs location (not on map)"), esc(GeoMap.fmt(waiting))]);
      counts.innerHTML = '<div class="gm-big">' + esc(GeoMap.fmt(fc.features.length)) + '</div><div class="gm-note">' +
        bi("已定位事件", "located incidents") + "</div>" + GeoMap.table(rows);
      var now = new Date();
      document.getElementById("gm-updated").textContent = now.toLocaleTimeString("zh-CN", { hour12: false });
      document.body.setAttribute("data-geomap-refreshed", String(Number(document.body.getAttribute("data-geomap-refreshed") || 0) + 1));
    }

    control.innerHTML = '<div class="gm-note">' + bi("更新于", "Updated") + ' <span id="gm-updated">—</span> · ' +
      bi("每", "every") + " " + cfg.refreshS + " s " +
      '<label><input id="gm-auto" type="checkbox" checked> ' + bi("自动刷新", "auto-refresh") + "</label></div>";

    await refresh();
    if (cfg.interactive) {
      setInterval(function () {
        if (!document.getElementById("gm-auto").checked) return;
        refresh().then(function () {
          page.status(bi("已刷新", "Refreshed"), "ok");
        }).catch(function (err) {
          page.fail(err, "refresh");
        });
      }, cfg.refreshS * 1000);
    }
    page.status(bi("已加载", "Loaded"), "ok");
    page.ready();
  };
})(window.GeoMap);
