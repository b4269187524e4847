/* Dispatcher view: located incidents coloured by status, overdue ones ringed, refreshed every
 * few seconds; a click on an incident shows its grid and the grid's workers. Incidents at one
 * spot are clustered (Leaflet.markercluster): a number, ringed when one of them is overdue;
 * a click spreads them out. Incidents outside the city are listed with a link to each. An
 * address search (forward geocoding: a building, a door, an estate's gate 东方小区门口, where
 * two streets meet 解放九路与胜利八路交叉口, a named place) pins each candidate, its popup
 * saying what was found, in which grid, how sure; the list below takes the map to each.
 * Data: OGC API Features (incidents with status/overdue, grids, styles) + /api/v1/incidents,
 * /api/v1/geocode. */
(function (GeoMap) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var OVERDUE = "#e41a1c";
  // Pixels within which markers merge: about two markers wide, so that only incidents drawn
  // on top of each other cluster, and the city's spread of statuses stays visible.
  var CLUSTER_PX = 28;

  function labelOf(doc, status) {
    var e = (doc.style.legend || []).filter(function (l) {
      return l.value === status;
    })[0];
    return e ? bi(e.label.zh, e.label.en) : esc(status);
  }

  /** The marker of an incident: a dot in its status colour, ringed in red when overdue. */
  function incidentIcon(colour, overdue, ref) {
    return L.divIcon({
      className: "gm-incident" + (overdue ? " gm-incident-overdue" : ""),
      html: '<span data-ref="' + esc(ref) + '" style="background:' + colour + '"></span>',
      iconSize: overdue ? [20, 20] : [14, 14],
    });
  }

  /** A cluster: how many incidents, ringed in red with how many are overdue when any is. */
  function clusterIcon(cluster) {
    var children = cluster.getAllChildMarkers();
    var overdue = children.filter(function (m) {
      return m.options.overdue;
    }).length;
    return L.divIcon({
      className: "gm-cluster" + (overdue ? " gm-cluster-overdue" : ""),
      html: '<span data-count="' + children.length + '" data-overdue="' + overdue + '">' +
        children.length + "</span>",
      iconSize: [32, 32],
    });
  }

  // The search candidates' popup and labels, shared with the worker page (geomap.js).
  var workersHtml = GeoMap.workersHtml;
  var matchLabel = GeoMap.matchLabel;
  var candidateHtml = GeoMap.candidateHtml;
  var SEARCH = "#e31a1c";

  function searchPin(text, type) {
    return L.divIcon({
      className: "gm-site gm-site-search gm-match-" + type,
      html: "<span>" + esc(text) + "</span>",
      iconSize: [24, 24],
      iconAnchor: [12, 12],
    });
  }

  /** The address search box (a live server only: a static export has none to ask). Results
   * go to their own overlay, apart from the refreshed incidents. */
  function addressSearch(page, box, list) {
    var group = L.layerGroup().addTo(page.map);
    page.groups.search = group;
    if (page.control && page.control.addOverlay) page.control.addOverlay(group, "搜索结果 Search results");
    page.legend.section("地址搜索", "Address search", [
      { zh: "搜索结果", en: "search result", color: SEARCH, kind: "dot" },
    ]);
    box.innerHTML = '<form id="gm-search-form"><input id="gm-q" type="search" size="22" ' +
      'placeholder="地址、小区门口、路口、地点 Address, gate, crossing, place"> ' +
      '<button type="submit">' + bi("搜索", "Search") + "</button></form>";

    function show(answer) {
      group.clearLayers();
      var found = answer.candidates;
      var markers = found.map(function (c, i) {
        return L.marker(page.toLatLng(c.lon, c.lat), {
          icon: searchPin(String(i + 1), c.match_type),
          title: c.address || "",
          zIndexOffset: 2000, // above the incidents
        }).bindPopup(candidateHtml(c)).addTo(group);
      });
      list.innerHTML = '<div class="gm-section-title">' + bi("搜索结果", "Search results") + " (" + found.length + ")</div>" +
        '<ol class="gm-list">' + found.map(function (c, i) {
          return '<li data-i="' + i + '">' + esc(c.address || c.building_code || "") + " · " + matchLabel(c.match_type) +
            " · " + esc(GeoMap.pct(c.confidence)) + "</li>";
        }).join("") + "</ol>" +
        (found.length ? "" : '<div class="gm-note">' + esc(answer.message || "") + "</div>");
      list.querySelectorAll("li").forEach(function (li) {
        li.addEventListener("click", function () {
          var m = markers[Number(li.getAttribute("data-i"))];
          page.map.setView(m.getLatLng(), Math.max(page.map.getZoom(), 17));
          m.openPopup();
        });
      });
      if (markers.length) {
        var bounds = L.latLngBounds(markers.map(function (m) {
          return m.getLatLng();
        }));
        if (markers.length > 1 && bounds.getNorthEast().distanceTo(bounds.getSouthWest()) > 150) {
          page.fitBounds(bounds, 17);
        } else {
          page.map.setView(markers[0].getLatLng(), Math.max(page.map.getZoom(), 17));
        }
        markers[0].openPopup();
      }
      page.counts.search = markers.length;
      document.body.setAttribute("data-geomap-search-type", markers.length ? found[0].match_type : "");
      document.body.setAttribute("data-geomap-search", String(markers.length));
    }

    document.getElementById("gm-search-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var q = document.getElementById("gm-q").value.trim();
      if (!q) return;
      page.status(bi("搜索中…", "Searching…"));
      page.get("/api/v1/geocode?limit=5&q=" + encodeURIComponent(q)).then(function (answer) {
        show(answer);
        page.status(bi("搜索完成", "Search done"), "ok");
      }).catch(function (err) {
        page.fail(err, "search");
      });
    });
  }

  function lonLat(f) {
    var c = f.geometry.coordinates;
    return c[0].toFixed(5) + ", " + c[1].toFixed(5);
  }

  GeoMap.views.dispatcher = async function (page) {
    var g = page.groups;
    var cfg = page.cfg;
    var S = cfg.sources;
    var counts = page.section("counts", "事件概况", "Incidents now");
    var outsideBox = page.section("outside");
    var control = page.section("refresh");
    var searchBox = cfg.interactive ? page.section("search", "地址搜索", "Address search") : null;
    var found = cfg.interactive ? page.section("found") : null;
    var detail = page.section("detail");

    var docs = await page.catalogue();
    var incidentsDoc = docs.incidents;
    var gridsDoc = docs.grids;
    if (!incidentsDoc) throw new Error("the incidents layer is not shown to this user");
    var style = incidentsDoc.style;
    await page.missing([
      GeoMap.need("grids", "事件按网格派遣，无网格则无法派遣", "incidents are dispatched to grids, none can be yet"),
    ]);

    var grids = await page.items(S.grids);
    var gridById = {};
    page.geoJSON(grids, {
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
      { zh: "同处多起（点击展开）", en: "several at one spot", color: "#34495e", kind: "dot" },
    ]);
    page.legend.section(gridsDoc.titles.zh, gridsDoc.titles.en, [
      { zh: "网格", en: "grid", color: gridsDoc.style.fill, border: gridsDoc.style.color },
      { zh: "所选事件网格", en: "grid of the selected incident", color: "#ffff99", border: "#ff7f00" },
    ]);
    if (searchBox) addressSearch(page, searchBox, found);
    if (cfg.interactive && docs.campaign_buildings) {
      var campaignBox = page.section("campaign", "走访进度", "Campaign progress");
      GeoMap.campaignOverlay(page, g.campaign, campaignBox, docs.campaign_buildings).catch(function (err) {
        page.fail(err, "campaigns");
      });
    }
    await page.fitCity();

    var clusters = L.markerClusterGroup({
      maxClusterRadius: CLUSTER_PX,
      showCoverageOnHover: false,
      spiderfyOnMaxZoom: true,
      iconCreateFunction: clusterIcon,
    }).addTo(g.incidents);
    page.clusters = clusters;
    var markerOf = {};
    var selected = null;

    function showIncident(ref, layer, latlng) {
      page.get("/api/v1/incidents/" + encodeURIComponent(ref)).then(function (inc) {
        selected = ref;
        g.selected.clearLayers();
        var grid = inc.grid_code ? gridById[inc.grid_code] : null;
        if (grid) {
          // The markers live in the marker pane, above every polygon: never hidden by it.
          page.geoJSON(grid, { interactive: false, style: { color: "#ff7f00", weight: 3, fillColor: "#ffff99", fillOpacity: 0.35 } })
            .addTo(g.selected);
        }
        var workers = workersHtml(inc.workers);
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
      var byStatus = {};
      var overdue = 0;
      var outside = [];
      var markers = [];
      markerOf = {};
      fc.features.forEach(function (f) {
        var p = f.properties;
        var c = f.geometry.coordinates;
        byStatus[p.status] = (byStatus[p.status] || 0) + 1;
        if (p.overdue) overdue += 1;
        var latlng = page.toLatLng(c[0], c[1]);
        var marker = L.marker(latlng, {
          icon: incidentIcon(GeoMap.colourOf(style, p), p.overdue, p.ref),
          overdue: !!p.overdue,
          ref: p.ref,
          // Overdue on top, so that their rings show.
          zIndexOffset: p.overdue ? 1000 : 0,
        });
        marker.bindTooltip(esc(p.ref) + " · " + labelOf(incidentsDoc, p.status) + (p.overdue ? " · " + bi("超期", "overdue") : ""));
        marker.on("click", function (e) {
          showIncident(p.ref, marker, e.latlng);
        });
        markers.push(marker);
        markerOf[p.ref] = marker;
        if (page.city && !page.city.contains(latlng)) outside.push(f);
      });
      clusters.clearLayers();
      clusters.addLayers(markers);
      showOutside(outside);
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

    // Incidents beyond the city's extent are drawn, but the map opens on the city: say where.
    function showOutside(outside) {
      document.body.setAttribute("data-geomap-outside", String(outside.length));
      if (!outside.length) {
        outsideBox.innerHTML = "";
        return;
      }
      var n = outside.length;
      outsideBox.innerHTML = '<div class="gm-warn">' +
        bi(n + " 个事件在城市范围外", n + (n === 1 ? " incident" : " incidents") + " outside the city") +
        ' (' + bi("点击定位", "click to go there") + ')</div><ul class="gm-list">' +
        outside.map(function (f) {
          return '<li data-ref="' + esc(f.properties.ref) + '">' + esc(f.properties.ref) + " " +
            bi("位于", "at") + " " + lonLat(f) + "</li>";
        }).join("") + "</ul>";
      outsideBox.querySelectorAll("li").forEach(function (li) {
        li.addEventListener("click", function () {
          var ref = li.getAttribute("data-ref");
          var marker = markerOf[ref];
          if (!marker) return;
          // At once (no animation): the next refresh may replace the marker at any moment.
          page.map.setView(marker.getLatLng(), Math.max(page.map.getZoom(), 15), { animate: false });
          clusters.zoomToShowLayer(marker); // spreads it out of a cluster, if it is in one
          showIncident(ref, marker, marker.getLatLng());
        });
      });
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
