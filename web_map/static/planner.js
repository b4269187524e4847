/* Planner view: coverage share of households per grid (choropleth), walking tiers, gaps,
 * centres; a click on the map runs a what-if with a centre added there; a button asks for
 * suggested sites. Data: OGC API Features (geometry, styles) + /api/v1/coverage/*. */
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

  GeoMap.views.planner = async function (page) {
    var S = page.cfg.sources;
    var g = page.groups;
    var map = page.map;

    var summaryBox = page.section("summary", "全市覆盖", "City-wide coverage");
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
    ((coverage && coverage.items) || []).forEach(function (it) {
      var w = widest(it);
      share[it.code] = w ? w.household_share : null;
      figuresOf[it.code] = it;
    });
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
    var choropleth = page.geoJSON(layers[0], {
      style: function (f) {
        var c = classOf(share[f.id]);
        return {
          color: "#555555",
          weight: 0.8,
          opacity: 0.8,
          fillColor: c ? c.color : NO_DATA,
          fillOpacity: 0.55,
        };
      },
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
          { sticky: true }
        );
      },
    });
    choropleth.addTo(g.coverage);
    page.count("coverage", layers[0].features.length);

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
      page.geoJSON(layers[2], {
        style: function (f) {
          var st = GeoMap.pathStyle(gapsDoc.style, f.properties);
          st.weight = 1.5;
          st.fillOpacity = 0.7;
          return st;
        },
        onEachFeature: function (f, layer) {
          layer.bindTooltip(GeoMap.popup(gapsDoc, f.properties), { sticky: true });
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

    async function runWhatIf() {
      page.status(bi("计算中…", "Computing…"));
      var answer = await page.get("/api/v1/coverage/what-if", {
        add: added.map(function (p) {
          return { lon: p[0], lat: p[1] };
        }),
      });
      g.whatif.clearLayers();
      answer.added.forEach(function (a, i) {
        L.marker(page.toLatLng(a.lon, a.lat), { icon: siteIcon("+" + (i + 1), "gm-site-whatif") })
          .bindTooltip(bi("新增中心", "Added centre") + " " + (i + 1) +
            (a.on_network ? "" : " — " + bi("离道路过远", "too far from a street")))
          .addTo(g.whatif);
      });
      page.count("whatif", 1);
      showWhatIf(answer);
      page.status(bi("情景分析完成", "What-if done"), "ok");
      document.body.setAttribute("data-geomap-whatif", String(added.length));
    }

    map.on("click", function (e) {
      added.push(page.fromLatLng(e.latlng));
      runWhatIf().catch(function (err) {
        page.fail(err, "what-if");
      });
    });

    document.getElementById("gm-clear").addEventListener("click", function () {
      added = [];
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
