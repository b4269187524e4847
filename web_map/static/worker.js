/* Grid worker view: one grid, its buildings (footprints, popups with the building's detail),
 * an address search (forward geocoding: buildings, doors, landmarks such as 东方小区门口,
 * intersections such as 解放九路与胜利八路交叉口, named places; each candidate a numbered pin
 * whose popup says what was found) and "near me" (browser geolocation -> buildings near).
 * Data: OGC API Features (grid, footprints, styles) + /api/v1/buildings, /api/v1/geocode. */
(function (GeoMap) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var NEAR_RADIUS_M = 300;

  function bboxOf(geometry) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    (function walk(c) {
      if (typeof c[0] === "number") {
        b[0] = Math.min(b[0], c[0]);
        b[1] = Math.min(b[1], c[1]);
        b[2] = Math.max(b[2], c[0]);
        b[3] = Math.max(b[3], c[1]);
      } else c.forEach(walk);
    })(geometry.coordinates);
    return b;
  }

  function workerNeeds() {
    return [
      GeoMap.need("grids", "网格员地图按网格打开", "the worker map opens one grid"),
      GeoMap.need("buildings", "网格员地图显示网格内的楼栋", "the worker map shows a grid's buildings"),
    ];
  }

  function pin(text, cls) {
    return L.divIcon({
      className: "gm-site " + cls,
      html: "<span>" + esc(text) + "</span>",
      iconSize: [24, 24],
      iconAnchor: [12, 12],
    });
  }

  // The search candidates' popup and labels, shared with the dispatcher (geomap.js).
  var workersHtml = GeoMap.workersHtml;
  var matchLabel = GeoMap.matchLabel;
  var candidateHtml = GeoMap.candidateHtml;

  function buildingHtml(b) {
    var rows = [
      [bi("地址", "Address"), esc(GeoMap.fmt(b.address))],
      [bi("名称", "Name"), esc(GeoMap.fmt(b.name))],
      [bi("户数", "Households"), esc(GeoMap.fmt(b.households))],
      [bi("楼栋编码", "Building code"), esc(b.code || b.building_code)],
      [bi("网格", "Grid"), esc(GeoMap.fmt(b.grid_name)) + " " + esc(GeoMap.fmt(b.grid_code))],
      [bi("网格员", "Grid workers"), workersHtml(b.workers)],
    ];
    if (b.coverage) {
      rows.push([
        bi("最近中心", "Nearest centre"),
        esc(GeoMap.fmt(b.coverage.center_name)) + " · " + esc(GeoMap.fmt(b.coverage.walk_m)) +
          " m · " + esc(GeoMap.fmt(b.coverage.minutes)) + " min",
      ]);
    }
    return '<div class="gm-popup"><div class="gm-popup-title">' + bi("楼栋", "Building") +
      "</div>" + GeoMap.table(rows) + "</div>";
  }

  async function gridPicker(page) {
    var box = page.section("pick", "选择网格", "Choose a grid");
    await page.missing(workerNeeds());
    var grids = await page.items(page.cfg.sources.grids);
    var options = grids.features
      .map(function (f) {
        return '<option value="' + esc(f.id) + '">' + esc(f.properties.name || f.id) + " " + esc(f.id) + "</option>";
      })
      .join("");
    box.innerHTML = grids.features.length
      ? '<select id="gm-grid">' + options + '</select> <button id="gm-open" type="button">' +
        bi("打开", "Open") + "</button>"
      : '<div class="gm-note">' + bi("没有可选的网格", "No grid to choose") + "</div>";
    function open(code) {
      var params = new URLSearchParams(window.location.search);
      params.set("grid", code);
      window.location.search = params.toString();
    }
    var layer = page.geoJSON(grids, {
      style: { color: "#1f78b4", weight: 1, fillOpacity: 0.1 },
      onEachFeature: function (f, l) {
        l.bindTooltip(esc(f.properties.name || f.id) + " " + esc(f.id), { sticky: true });
        l.on("click", function () {
          open(f.id);
        });
      },
    }).addTo(page.groups.grid);
    page.count("grid", grids.features.length);
    page.legend.section("网格", "Grids", [
      { zh: "点击打开网格", en: "click to open a grid", color: "#a6cee3", border: "#1f78b4" },
    ]);
    await page.fitCity();
    if (grids.features.length) {
      document.getElementById("gm-open").addEventListener("click", function () {
        open(document.getElementById("gm-grid").value);
      });
    }
    page.status(bi("请选择网格", "Choose a grid"), "ok");
    page.ready();
  }

  GeoMap.views.worker = async function (page) {
    var g = page.groups;
    var code = page.cfg.grid;
    if (!code) return gridPicker(page);

    var info = page.section("grid", "网格", "Grid");
    var search = page.section("search", "地址搜索", "Address search");
    var near = page.section("near", "附近楼栋", "Near me");
    var list = page.section("list");

    var docs = await page.catalogue();
    var gridsDoc = docs.grids;
    var buildingsDoc = docs.buildings;
    await page.missing(workerNeeds());
    var grid;
    try {
      grid = await page.get("/ogc/collections/grids/items/" + encodeURIComponent(code));
    } catch (err) {
      if (err instanceof GeoMap.ApiError && err.status === 404) {
        info.innerHTML = '<div class="gm-warn">' + bi("无此网格", "No such grid") + ": " + esc(code) + "</div>";
        page.status(bi("无此网格", "Unknown grid"), "error");
        await page.fitCity();
        page.ready();
        return;
      }
      throw err;
    }
    var bbox = bboxOf(grid.geometry);
    // A margin around the grid: the neighbours' buildings give context.
    var mx = (bbox[2] - bbox[0]) * 0.25;
    var my = (bbox[3] - bbox[1]) * 0.25;
    bbox = [bbox[0] - mx, bbox[1] - my, bbox[2] + mx, bbox[3] + my];
    var codes = {};
    var listed = [];
    var offset = 0;
    for (;;) {
      var part = await page.get("/api/v1/buildings?grid=" + encodeURIComponent(code) + "&limit=1000&offset=" + offset);
      part.items.forEach(function (b) {
        codes[b.code] = b;
        listed.push(b);
      });
      offset += part.items.length;
      if (!part.items.length || offset >= part.total) break;
    }
    var footprints = await page.items(
      "/ogc/collections/buildings/items?limit=10000&bbox=" + bbox.map(function (v) {
        return v.toFixed(7);
      }).join(",")
    );

    var gridStyle = GeoMap.pathStyle(gridsDoc.style, grid.properties);
    gridStyle.weight = 3;
    gridStyle.fillOpacity = 0.08;
    var gridLayer = page.geoJSON(grid, { style: gridStyle, interactive: false }).addTo(g.grid);
    page.count("grid", 1);

    function openBuilding(layer, bcode, latlng) {
      page.get("/api/v1/buildings/" + encodeURIComponent(bcode)).then(function (b) {
        layer.bindPopup(buildingHtml(b)).openPopup(latlng);
      }).catch(function (err) {
        page.fail(err, "building " + bcode);
      });
    }

    var inGrid = { type: "FeatureCollection", features: [] };
    var around = { type: "FeatureCollection", features: [] };
    footprints.features.forEach(function (f) {
      (codes[f.id] ? inGrid : around).features.push(f);
    });
    var style = buildingsDoc.style;
    var pointStyle = function (f, latlng) {
      return L.circleMarker(latlng, { radius: 4 });
    };
    page.geoJSON(around, {
      pointToLayer: pointStyle,
      style: { color: "#999999", weight: 0.5, fillColor: "#dddddd", fillOpacity: 0.5 },
      onEachFeature: function (f, layer) {
        layer.on("click", function (e) {
          openBuilding(layer, f.id, e.latlng);
        });
      },
    }).addTo(g.context);
    var buildingsLayer = page.geoJSON(inGrid, {
      pointToLayer: pointStyle,
      style: function (f) {
        return GeoMap.pathStyle(style, f.properties);
      },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(esc(f.properties.name || f.properties.address || f.id));
        layer.on("click", function (e) {
          openBuilding(layer, f.id, e.latlng);
        });
      },
    }).addTo(g.buildings);
    page.count("buildings", inGrid.features.length);
    page.count("context", around.features.length);

    var households = listed.reduce(function (s, b) {
      return s + (b.households || 0);
    }, 0);
    var first = listed[0];
    var rows = [
      [GeoMap.fieldTitle(gridsDoc, "name"), esc(GeoMap.fmt(grid.properties.name))],
      [GeoMap.fieldTitle(gridsDoc, "code"), esc(code)],
      [GeoMap.fieldTitle(gridsDoc, "community_code"), esc(GeoMap.fmt(grid.properties.community_code))],
      [bi("楼栋", "Buildings"), esc(GeoMap.fmt(listed.length))],
      [bi("户数", "Households"), esc(GeoMap.fmt(households))],
    ];
    info.innerHTML = GeoMap.table(rows);
    if (first) {
      // The grid's workers come with any of its buildings.
      page.get("/api/v1/buildings/" + encodeURIComponent(first.code)).then(function (b) {
        info.innerHTML = GeoMap.table(rows.concat([[bi("网格员", "Grid workers"), workersHtml(b.workers)]]));
      }).catch(function (err) {
        page.fail(err, "workers");
      });
    }

    page.legend.section(gridsDoc.titles.zh, gridsDoc.titles.en, [
      { zh: "本网格", en: "this grid", color: gridsDoc.style.color, kind: "line" },
    ]);
    page.legend.section(buildingsDoc.titles.zh, buildingsDoc.titles.en, [
      { zh: "本网格楼栋", en: "in this grid", color: style.fill || style.color, border: style.color },
      { zh: "周边楼栋", en: "nearby", color: "#dddddd", border: "#999999" },
    ]);
    page.legend.section("搜索与定位", "Search and location", [
      { zh: "搜索结果", en: "search result", color: "#e31a1c", kind: "dot" },
      { zh: "我的位置", en: "my location", color: "#1f78b4", kind: "dot" },
      { zh: "附近楼栋", en: "building near me", color: "#33a02c", kind: "dot" },
    ]);

    page.fit([gridLayer]);

    function showList(title, items, markerOf) {
      list.innerHTML = '<div class="gm-section-title">' + title + "</div>" +
        '<ol class="gm-list">' + items.map(function (b, i) {
          return '<li data-i="' + i + '">' + esc(b.address || b.name || b.code || b.building_code) +
            (b.match_type ? " · " + matchLabel(b.match_type) : "") +
            (b.distance_m !== null && b.distance_m !== undefined ? " · " + esc(GeoMap.fmt(b.distance_m)) + " m" : "") +
            (b.confidence !== undefined ? " · " + GeoMap.pct(b.confidence) : "") + "</li>";
        }).join("") + "</ol>";
      list.querySelectorAll("li").forEach(function (li) {
        li.addEventListener("click", function () {
          var m = markerOf(Number(li.getAttribute("data-i")));
          page.map.setView(m.getLatLng(), Math.max(page.map.getZoom(), 17));
          m.openPopup();
        });
      });
    }

    // The candidates on the map: the first one's popup open; namesakes far apart (an estate
    // name on several roads, two places of one name) all in view.
    function showFound(markers) {
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

    // Address search.
    search.innerHTML = '<form id="gm-search-form"><input id="gm-q" type="search" placeholder="地址 Address, e.g. 皖江街1号" size="22"> ' +
      '<button type="submit">' + bi("搜索", "Search") + "</button></form>" +
      '<div class="gm-note">' + bi("也可输入小区门口、路口、地点名称", "also an estate's gate, a crossing, a place's name") + "</div>";
    document.getElementById("gm-search-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var q = document.getElementById("gm-q").value.trim();
      if (!q) return;
      page.status(bi("搜索中…", "Searching…"));
      page.get("/api/v1/geocode?limit=5&q=" + encodeURIComponent(q)).then(function (answer) {
        g.search.clearLayers();
        var markers = answer.candidates.map(function (c, i) {
          return L.marker(page.toLatLng(c.lon, c.lat), {
            icon: pin(String(i + 1), "gm-site-search gm-match-" + c.match_type),
            title: c.address || "",
          })
            .bindPopup(candidateHtml(c))
            .addTo(g.search);
        });
        showList(bi("搜索结果", "Search results") + " (" + markers.length + ")", answer.candidates, function (i) {
          return markers[i];
        });
        if (!markers.length) {
          list.insertAdjacentHTML("beforeend", '<div class="gm-note">' + esc(answer.message || "") + "</div>");
        } else {
          showFound(markers);
        }
        page.count("search", markers.length);
        page.status(bi("搜索完成", "Search done"), "ok");
        document.body.setAttribute("data-geomap-search-type", markers.length ? answer.candidates[0].match_type : "");
        document.body.setAttribute("data-geomap-search", String(markers.length));
      }).catch(function (err) {
        page.fail(err, "search");
      });
    });

    // Near me: the browser's position (WGS-84) -> buildings within NEAR_RADIUS_M.
    near.innerHTML = '<button id="gm-near" type="button">' + bi("附近楼栋", "Buildings near me") + "</button>";
    document.getElementById("gm-near").addEventListener("click", function () {
      if (!navigator.geolocation) {
        page.status(bi("浏览器不支持定位", "No geolocation in this browser"), "error");
        return;
      }
      page.status(bi("定位中…", "Locating…"));
      navigator.geolocation.getCurrentPosition(function (pos) {
        var lon = pos.coords.longitude;
        var lat = pos.coords.latitude;
        page.get("/api/v1/buildings?limit=20&radius=" + NEAR_RADIUS_M + "&near=" + lon.toFixed(7) + "," + lat.toFixed(7))
          .then(function (answer) {
            g.near.clearLayers();
            L.circle(page.toLatLng(lon, lat), { radius: NEAR_RADIUS_M, color: "#1f78b4", weight: 1, fillOpacity: 0.05, interactive: false }).addTo(g.near);
            L.circleMarker(page.toLatLng(lon, lat), { radius: 7, color: "#ffffff", weight: 2, fillColor: "#1f78b4", fillOpacity: 1 })
              .bindTooltip(bi("我的位置", "My location")).addTo(g.near);
            var markers = answer.items.map(function (b) {
              return L.circleMarker(page.toLatLng(b.lon, b.lat), { radius: 6, color: "#ffffff", weight: 1.5, fillColor: "#33a02c", fillOpacity: 1 })
                .bindPopup(buildingHtml(b))
                .addTo(g.near);
            });
            showList(bi("附近楼栋", "Buildings near me") + " (" + answer.total + ", " + NEAR_RADIUS_M + " m)", answer.items, function (i) {
              return markers[i];
            });
            page.map.setView(page.toLatLng(lon, lat), Math.max(page.map.getZoom(), 16));
            page.count("near", markers.length);
            page.status(bi("已找到附近楼栋", "Buildings near you"), "ok");
            document.body.setAttribute("data-geomap-near", String(markers.length));
          })
          .catch(function (err) {
            page.fail(err, "near me");
          });
      }, function (err) {
        page.status(bi("无法定位", "Location unavailable") + ": " + esc(err.message), "error");
      }, { enableHighAccuracy: true, timeout: 10000 });
    });

    page.status(bi("已加载", "Loaded"), "ok");
    page.ready();
  };
})(window.GeoMap);
