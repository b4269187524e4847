/* geo-service web map: what the three views share.
 *
 * - reading the API (fetch; the page's ?token= is sent as a Bearer token; a static export
 *   answers from the data embedded in the page instead),
 * - WGS-84 -> GCJ-02 for a GCJ-02 basemap (Amap): every overlay coordinate passes through
 *   toLatLng on its way onto the map, every clicked point through fromLatLng on its way back
 *   (the API always gets and gives WGS-84),
 * - styles, popups and legends from the layer catalogue's collection documents,
 * - a panel per view, and readiness flags for tests (body[data-geomap-ready]),
 * - vendored plugins a view loads only when asked (page.plugin: the planner's grid editing).
 */
(function (global) {
  "use strict";

  var GeoMap = { views: {}, pages: [] };

  // -- coordinates: WGS-84 <-> GCJ-02 (the same formula as geo_service/crs.py) ---------------
  var A = 6378245.0;
  var EE = 0.00669342162296594323;
  var PI = Math.PI;

  function inChina(lon, lat) {
    return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
  }

  function gcjOffset(lon, lat) {
    var x = lon - 105.0;
    var y = lat - 35.0;
    var shared = ((20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0) / 3.0;
    var sq = Math.sqrt(Math.abs(x));
    var dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sq + shared;
    dlat += ((20.0 * Math.sin(y * PI) + 40.0 * Math.sin((y / 3.0) * PI)) * 2.0) / 3.0;
    dlat += ((160.0 * Math.sin((y / 12.0) * PI) + 320.0 * Math.sin((y / 30.0) * PI)) * 2.0) / 3.0;
    var dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sq + shared;
    dlon += ((20.0 * Math.sin(x * PI) + 40.0 * Math.sin((x / 3.0) * PI)) * 2.0) / 3.0;
    dlon += ((150.0 * Math.sin((x / 12.0) * PI) + 300.0 * Math.sin((x / 30.0) * PI)) * 2.0) / 3.0;
    var phi = (lat / 180.0) * PI;
    var magic = 1.0 - EE * Math.sin(phi) * Math.sin(phi);
    var sqrtMagic = Math.sqrt(magic);
    dlat = (dlat * 180.0) / (((A * (1.0 - EE)) / (magic * sqrtMagic)) * PI);
    dlon = (dlon * 180.0) / ((A / sqrtMagic) * Math.cos(phi) * PI);
    return [dlon, dlat];
  }

  GeoMap.wgs84ToGcj02 = function (lon, lat) {
    if (!inChina(lon, lat)) return [lon, lat];
    var d = gcjOffset(lon, lat);
    return [lon + d[0], lat + d[1]];
  };

  // No closed inverse: fixed-point iteration on the forward formula (millimetres in ~5 rounds).
  GeoMap.gcj02ToWgs84 = function (glon, glat) {
    if (!inChina(glon, glat)) return [glon, glat];
    var lon = glon;
    var lat = glat;
    for (var i = 0; i < 30; i++) {
      var f = GeoMap.wgs84ToGcj02(lon, lat);
      var rlon = f[0] - glon;
      var rlat = f[1] - glat;
      lon -= rlon;
      lat -= rlat;
      if (Math.abs(rlon) < 1e-10 && Math.abs(rlat) < 1e-10) break;
    }
    return [lon, lat];
  };

  // -- small helpers -----------------------------------------------------------------------
  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  GeoMap.esc = esc;

  GeoMap.bi = function (zh, en) {
    return '<span class="gm-zh">' + esc(zh) + '</span> <span class="gm-en">' + esc(en) + "</span>";
  };

  GeoMap.fmt = function (value) {
    if (value === null || value === undefined || value === "") return "—";
    if (value === true) return "是 Yes";
    if (value === false) return "否 No";
    if (typeof value === "number") {
      return Number.isInteger(value)
        ? value.toLocaleString("en")
        : value.toLocaleString("en", { maximumFractionDigits: 2 });
    }
    var text = String(value);
    if (/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(text)) return text.replace("T", " ").slice(0, 16);
    return text;
  };

  GeoMap.pct = function (share) {
    return share === null || share === undefined ? "—" : (share * 100).toFixed(1) + "%";
  };

  /** An API answer other than 2xx: its status, message and whole body (`details` of a 409
   * carry the findings of a refused grid edit), and the seconds a 429 or 503 says to wait.
   * No answer at all (offline, connection dropped) is status 0. */
  function ApiError(status, message, path, body, retryAfter) {
    this.name = "ApiError";
    this.status = status;
    this.message = message;
    this.path = path;
    this.body = body || {};
    this.retryAfter = retryAfter === undefined ? null : retryAfter;
  }
  ApiError.prototype = Object.create(Error.prototype);
  GeoMap.ApiError = ApiError;

  /** fetch(url, init) answered as JSON: resolves {body, status, headers} for a 2xx, rejects
   * with an ApiError otherwise (status 0 when no answer came). Every page reads the API this
   * way: the map views through Page.request, the phone page and the residents' notice
   * directly. */
  GeoMap.fetchJson = function (url, init) {
    var path = url.replace(/^https?:\/\/[^/]+/, "");
    return fetch(url, init).then(
      function (r) {
        if (r.ok) {
          return r.json().then(function (body) {
            return { body: body, status: r.status, headers: r.headers };
          });
        }
        var wait = Number(r.headers.get("Retry-After"));
        return r
          .json()
          .catch(function () {
            return {};
          })
          .then(function (b) {
            var message = (b && (b.message || b.detail)) || r.statusText;
            throw new ApiError(r.status, message, path, b, isFinite(wait) && wait > 0 ? wait : null);
          });
      },
      function (err) {
        throw new ApiError(0, (err && err.message) || "no answer", path, {});
      }
    );
  };

  function tokenOfPage() {
    try {
      var q = new URLSearchParams(global.location.search);
      return q.get("access_token") || q.get("token");
    } catch (e) {
      return null;
    }
  }

  // -- the page ------------------------------------------------------------------------------
  function Page(args) {
    this.map = args.map;
    this.control = args.control;
    this.groups = args.groups;
    this.cfg = args.config;
    this.crs = this.cfg.crs || "wgs84";
    this.token = tokenOfPage();
    this.counts = {};
    this.docs = {};
    var page = this;
    this.toLatLng = function (lon, lat) {
      var p = page.crs === "gcj02" ? GeoMap.wgs84ToGcj02(lon, lat) : [lon, lat];
      return L.latLng(p[1], p[0]);
    };
    this.coordsToLatLng = function (c) {
      return page.toLatLng(c[0], c[1]);
    };
  }

  /** WGS-84 [lon, lat] of a point on the map (a click, the map's centre). */
  Page.prototype.fromLatLng = function (latlng) {
    var lon = latlng.lng;
    var lat = latlng.lat;
    return this.crs === "gcj02" ? GeoMap.gcj02ToWgs84(lon, lat) : [lon, lat];
  };

  Page.prototype.path = function (url) {
    // Paging links are absolute: back to a path, so that embedded data answers them too.
    return url.replace(/^https?:\/\/[^/]+/, "");
  };

  /** The JSON answer of an API path (GET), or of a POST with a JSON body. `opts.fresh`: ask
   * the server again rather than take the browser's copy (after an edit changed the data). */
  Page.prototype.get = function (path, body, opts) {
    return this.request(body === undefined ? "GET" : "POST", path, body, opts);
  };

  /** The JSON answer of any method on an API path (PUT and PATCH for the grid edits). */
  Page.prototype.request = function (method, path, body, opts) {
    var cfg = this.cfg;
    if (cfg.data) {
      if (method === "GET" && Object.prototype.hasOwnProperty.call(cfg.data, path)) {
        return Promise.resolve(JSON.parse(JSON.stringify(cfg.data[path])));
      }
      return Promise.reject(new ApiError(0, "not in this static export: " + path, path));
    }
    var headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = "Bearer " + this.token;
    var init = { method: method, headers: headers };
    if (opts && opts.fresh) init.cache = "no-cache";
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return GeoMap.fetchJson(cfg.api + path, init).then(function (answer) {
      return answer.body;
    });
  };

  /** Every feature of an OGC items path, following `next` links to the end. */
  Page.prototype.items = async function (path, opts) {
    var all = { type: "FeatureCollection", features: [] };
    var url = path;
    while (url) {
      var page = await this.get(url, undefined, opts);
      Array.prototype.push.apply(all.features, page.features || []);
      var next = (page.links || []).filter(function (l) {
        return l.rel === "next";
      })[0];
      url = next ? this.path(next.href) : null;
    }
    return all;
  };

  /** A Leaflet GeoJSON layer whose coordinates go through the map's CRS shift. */
  Page.prototype.geoJSON = function (data, options) {
    var opts = Object.assign({ coordsToLatLng: this.coordsToLatLng }, options || {});
    return L.geoJSON(data, opts);
  };

  /** Load a vendored plugin the page names in cfg.plugins (its script and stylesheet, from
   * our own static files), once; resolves when its script has run. Plugins that only some
   * uses of a view need (the planner's grid editing) come this way, so that merely viewing,
   * and a static export, which cannot edit, never carry them. */
  Page.prototype.plugin = function (name) {
    this._plugins = this._plugins || {};
    var spec = (this.cfg.plugins || {})[name];
    if (!spec) return Promise.reject(new Error("this page offers no plugin " + name));
    var loaded = this._plugins;
    if (!loaded[name]) {
      loaded[name] = new Promise(function (resolve, reject) {
        if (spec.css) {
          var link = document.createElement("link");
          link.rel = "stylesheet";
          link.href = spec.css;
          document.head.appendChild(link);
        }
        var script = document.createElement("script");
        script.src = spec.js;
        script.onload = function () {
          resolve();
        };
        script.onerror = function () {
          delete loaded[name]; // a later attempt may succeed
          script.remove();
          reject(new Error("could not load " + spec.js));
        };
        document.head.appendChild(script);
      });
    }
    return loaded[name];
  };

  // -- shapes ------------------------------------------------------------------------------------
  function inRing(lon, lat, ring) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0];
      var yi = ring[i][1];
      var xj = ring[j][0];
      var yj = ring[j][1];
      if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  /** Whether a WGS-84 point lies in a GeoJSON Polygon or MultiPolygon (holes excluded). */
  GeoMap.contains = function (geometry, lon, lat) {
    if (!geometry) return false;
    var polygons =
      geometry.type === "Polygon" ? [geometry.coordinates] : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
    return polygons.some(function (rings) {
      return (
        inRing(lon, lat, rings[0]) &&
        !rings.slice(1).some(function (hole) {
          return inRing(lon, lat, hole);
        })
      );
    });
  };

  /** The places an API message names as "lon X, lat Y" (where a line ends inside a grid, where
   * a shape leaves its community), as [lon, lat] pairs. */
  GeoMap.placesIn = function (message) {
    var found = [];
    var re = /lon (-?\d+(?:\.\d+)?),? lat (-?\d+(?:\.\d+)?)/g;
    var m;
    while ((m = re.exec(String(message || ""))) !== null) found.push([Number(m[1]), Number(m[2])]);
    return found;
  };

  Page.prototype.count = function (key, n) {
    this.counts[key] = (this.counts[key] || 0) + n;
  };

  // -- styles from the layer catalogue ----------------------------------------------------
  GeoMap.colourOf = function (style, props) {
    var legend = style.legend || [];
    if (style.color_by && legend.length) {
      var value = props[style.color_by];
      var fallback = null;
      for (var i = 0; i < legend.length; i++) {
        if (!("value" in legend[i])) fallback = legend[i].color;
        else if (legend[i].value === value) return legend[i].color;
      }
      if (fallback) return fallback;
    }
    return style.fill || style.color;
  };

  GeoMap.pathStyle = function (style, props) {
    if (style.type === "line") {
      return {
        color: GeoMap.colourOf(style, props || {}) || style.color,
        weight: style.width,
        opacity: 0.9,
        fill: false,
      };
    }
    return {
      color: style.color,
      weight: style.width,
      opacity: 0.9,
      fillColor: GeoMap.colourOf(style, props || {}),
      fillOpacity: style.opacity,
    };
  };

  GeoMap.circle = function (page, style, feature, extra) {
    var c = feature.geometry.coordinates;
    return L.circleMarker(
      page.toLatLng(c[0], c[1]),
      Object.assign(
        {
          radius: style.radius,
          color: style.color,
          weight: 2,
          fillColor: GeoMap.colourOf(style, feature.properties || {}),
          fillOpacity: style.opacity,
        },
        extra || {}
      )
    );
  };

  function fieldTitle(doc, name) {
    var prop = (doc && doc.properties && doc.properties[name]) || {};
    var t = prop.title;
    return t ? GeoMap.bi(t.zh, t.en) : esc(name);
  }
  GeoMap.fieldTitle = fieldTitle;

  GeoMap.table = function (rows) {
    return (
      '<table class="gm-table">' +
      rows
        .map(function (r) {
          return "<tr><th>" + r[0] + "</th><td>" + r[1] + "</td></tr>";
        })
        .join("") +
      "</table>"
    );
  };

  /** Popup HTML of a feature: the collection's title and its popup fields, bilingual. */
  // -- geocoding candidates (the worker's and the dispatcher's address search) ----------------
  // What a candidate is (match_type of /api/v1/geocode), in both languages.
  var MATCH = {
    exact: ["精确匹配", "exact"],
    structured: ["地址要素匹配", "structured"],
    fuzzy: ["近似匹配", "fuzzy"],
    partial: ["门牌或小区", "partial"],
    landmark: ["地标", "landmark"],
    intersection: ["路口", "intersection"],
    place: ["地点", "place"],
  };
  var SURE = 0.8; // a candidate at least this confident is taken without a person checking

  GeoMap.matchLabel = function (type) {
    var m = MATCH[type] || [type, type];
    return GeoMap.bi(m[0], m[1]);
  };

  GeoMap.workersHtml = function (workers) {
    if (!workers || !workers.length) return "—";
    return workers
      .map(function (w) {
        return esc(w.name) + (w.phone ? " " + esc(w.phone) : "") + " (" + esc(w.code) + ")";
      })
      .join("<br>");
  };

  /** The popup of a search candidate: a building, or a point without one (a door, an estate's
   * landmark, where two streets meet, a named place), with its grid and how sure it is. */
  GeoMap.candidateHtml = function (c) {
    var bi = GeoMap.bi;
    var fmt = GeoMap.fmt;
    var rows = [
      [bi("匹配类型", "Match"), GeoMap.matchLabel(c.match_type)],
      [bi("地址", "Address"), esc(fmt(c.address))],
    ];
    if (c.place) rows.push([bi("位置", "Where"), esc(c.place)]);
    if (c.place_kind) {
      rows.push([bi("地点类型", "Kind of place"), esc(c.place_kind) + (c.place_code ? " (" + esc(c.place_code) + ")" : "")]);
    }
    if (c.building_code) {
      rows.push([bi("楼栋编码", "Building code"), esc(c.building_code)]);
      rows.push([bi("名称", "Name"), esc(fmt(c.name))]);
      rows.push([bi("户数", "Households"), esc(fmt(c.households))]);
    } else if (c.buildings !== undefined && c.buildings !== null) {
      rows.push([bi("楼栋数", "Buildings"), esc(fmt(c.buildings))]);
    }
    rows.push([bi("网格", "Grid"), esc(fmt(c.grid_name)) + " " + esc(fmt(c.grid_code))]);
    rows.push([bi("社区", "Community"), esc(fmt(c.community_name))]);
    rows.push([bi("网格员", "Grid workers"), GeoMap.workersHtml(c.workers)]);
    rows.push([
      bi("置信度", "Confidence"),
      esc(GeoMap.pct(c.confidence)) + (c.confidence < SURE ? " " + bi("待确认", "unsure") : ""),
    ]);
    return '<div class="gm-popup gm-popup-' + esc(c.match_type) + '"><div class="gm-popup-title">' +
      bi("搜索结果", "Search result") + " · " + GeoMap.matchLabel(c.match_type) + "</div>" + GeoMap.table(rows) + "</div>";
  };

  GeoMap.popup = function (doc, props) {
    var fields = (doc.style && doc.style.popup) || Object.keys(props);
    var head = doc.titles ? GeoMap.bi(doc.titles.zh, doc.titles.en) : esc(doc.id);
    return (
      '<div class="gm-popup"><div class="gm-popup-title">' +
      head +
      "</div>" +
      GeoMap.table(
        fields.map(function (f) {
          return [fieldTitle(doc, f), esc(GeoMap.fmt(props[f]))];
        })
      ) +
      "</div>"
    );
  };

  /** The campaign overlay (planner and dispatcher maps): pick a door-to-door campaign and
   * its buildings are drawn done / flagged / not yet in its current round (the
   * campaign_buildings layer), with the counts in the panel. */
  GeoMap.campaignOverlay = function (page, group, box, doc) {
    var bi = GeoMap.bi;
    box.innerHTML = '<select id="gm-campaign-pick"><option value="">' +
      bi("（选择走访活动）", "(choose a campaign)") + "</option></select>" +
      '<div id="gm-campaign-figures" class="gm-note"></div>';
    var select = box.querySelector("select");
    var figures = box.querySelector("#gm-campaign-figures");
    // A pane above the grids' fills (and below the markers), drawn on a canvas: a city's
    // campaign is tens of thousands of dots.
    if (!page.map.getPane("gm-campaign")) page.map.createPane("gm-campaign").style.zIndex = 450;
    var renderer = L.canvas({ padding: 0.2, pane: "gm-campaign" });
    var legend = doc.style.legend || [];
    var shownLegend = false;

    function show(id) {
      group.clearLayers();
      figures.innerHTML = "";
      document.body.removeAttribute("data-geomap-campaign");
      if (!id) return Promise.resolve();
      page.status(bi("读取走访进度…", "Reading campaign progress…"));
      var path = "/ogc/collections/campaign_buildings/items?limit=10000&campaign=" + encodeURIComponent(id);
      return page.items(path).then(function (fc) {
        var n = {};
        var round = null;
        var drawn = fc.features.slice().sort(function (a, b) { // buildings done and flagged on top
          return (a.properties.status === "not_yet" ? 0 : 1) - (b.properties.status === "not_yet" ? 0 : 1);
        });
        drawn.forEach(function (f) {
          var p = f.properties;
          n[p.status] = (n[p.status] || 0) + 1;
          round = p.round;
          GeoMap.circle(page, doc.style, f, { renderer: renderer, pane: "gm-campaign", weight: 1 })
            .bindPopup(GeoMap.popup(doc, p))
            .addTo(group);
        });
        if (!shownLegend) GeoMap.legendOf(page.legend, doc, "dot");
        shownLegend = true;
        var rows = legend.map(function (l) {
          return ['<span class="gm-swatch gm-swatch-dot" style="background:' + l.color + '"></span>' +
            bi(l.label.zh, l.label.en), esc(GeoMap.fmt(n[l.value] || 0))];
        });
        figures.innerHTML = (round ? bi("第 " + round + " 轮", "Round " + round) + " · " : "") +
          esc(GeoMap.fmt(fc.features.length)) + " " + bi("栋楼", "buildings") + GeoMap.table(rows);
        if (!page.map.hasLayer(group)) group.addTo(page.map);
        if (drawn.length) page.fitBounds(L.featureGroup(group.getLayers()).getBounds(), 17);
        document.body.setAttribute("data-geomap-campaign", JSON.stringify(n));
        page.status(bi("已加载", "Loaded"), "ok");
      });
    }

    select.addEventListener("change", function () {
      show(select.value).catch(function (err) {
        page.fail(err, "campaign " + select.value);
      });
    });
    return page.get("/api/v1/campaigns").then(function (answer) {
      answer.items.forEach(function (c) {
        var o = document.createElement("option");
        o.value = String(c.id);
        o.textContent = c.name + " (#" + c.id + ")";
        select.appendChild(o);
      });
      if (!answer.items.length) figures.innerHTML = bi("尚无走访活动", "No campaign yet");
    });
  };

  // -- legend and panel controls ------------------------------------------------------------
  // Made when the first map view starts, not when this file loads: the phone page uses the
  // helpers above without Leaflet.
  var Legend = null;
  var Panel = null;

  function makeControls() {
    if (Legend) return;
    Legend = L.Control.extend({
      options: { position: "bottomright" },
      onAdd: function () {
        this._div = L.DomUtil.create("div", "gm-legend leaflet-bar");
        this._div.innerHTML =
          '<div class="gm-legend-head">' + GeoMap.bi("图例", "Legend") + "</div>";
        L.DomEvent.disableClickPropagation(this._div);
        L.DomEvent.disableScrollPropagation(this._div);
        return this._div;
      },
      section: function (titleZh, titleEn, entries) {
        var html = '<div class="gm-legend-section"><div class="gm-legend-title">';
        html += GeoMap.bi(titleZh, titleEn) + "</div>";
        entries.forEach(function (e) {
          var cls = "gm-swatch gm-swatch-" + (e.kind || "fill");
          var st =
            e.kind === "ring"
              ? "border-color:" + e.color
              : e.kind === "line"
                ? "border-top-color:" + e.color
                : "background:" + e.color;
          if (e.border) st += ";border-color:" + e.border;
          html +=
            '<div class="gm-legend-row"><span class="' + cls + '" style="' + st + '"></span>';
          html += GeoMap.bi(e.zh, e.en) + "</div>";
        });
        this._div.insertAdjacentHTML("beforeend", html + "</div>");
        return this._div.lastElementChild; // the section, for a view that hides or moves it
      },
    });

    Panel = L.Control.extend({
      options: { position: "topleft" },
      onAdd: function () {
        var div = L.DomUtil.create("div", "gm-panel leaflet-bar");
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        this._div = div;
        return div;
      },
    });
  }

  /** A legend section from a collection document's style. */
  GeoMap.legendOf = function (legend, doc, kind) {
    var style = doc.style || {};
    var entries = (style.legend || []).map(function (e) {
      return { zh: e.label.zh, en: e.label.en, color: e.color, kind: kind || style.type };
    });
    legend.section(doc.titles.zh, doc.titles.en, entries);
  };

  Page.prototype.status = function (html, kind) {
    var el = this.panel._div.querySelector(".gm-status");
    el.className = "gm-status" + (kind ? " gm-status-" + kind : "");
    el.innerHTML = html;
  };

  Page.prototype.fail = function (err, what) {
    var msg = err && err.message ? err.message : String(err);
    this.status(GeoMap.bi("出错", "Error") + ": " + esc(what ? what + ": " : "") + esc(msg), "error");
    document.body.setAttribute("data-geomap-error", msg);
    console.error("geo-service map:", what || "", msg);
  };

  Page.prototype.section = function (id, titleZh, titleEn) {
    var div = L.DomUtil.create("div", "gm-section", this.panel._div);
    div.id = "gm-" + id;
    if (titleZh) div.innerHTML = '<div class="gm-section-title">' + GeoMap.bi(titleZh, titleEn) + "</div>";
    var body = L.DomUtil.create("div", "gm-section-body", div);
    return body;
  };

  Page.prototype.ready = function () {
    document.body.setAttribute("data-geomap-ready", "1");
  };

  /** Fit the map to bounds, keeping them clear of the panel (top left) and the legend (bottom
   * right); a single point (one centre, one incident) opens at street level, not at zoom 22
   * (`maxZoom`: closer, for drawing on one grid). */
  Page.prototype.fitBounds = function (b, maxZoom) {
    var wide = this.map.getSize().x > 900;
    this.map.fitBounds(b, {
      paddingTopLeft: [wide ? 360 : 20, 20],
      paddingBottomRight: [wide ? 300 : 20, 20],
      maxZoom: maxZoom || 17,
    });
  };

  /** Fit the map to the bounds of Leaflet layers (the first that has any). */
  Page.prototype.fit = function (layers) {
    for (var i = 0; i < layers.length; i++) {
      var b = layers[i] && layers[i].getBounds ? layers[i].getBounds() : null;
      if (b && b.isValid()) {
        this.fitBounds(b);
        return true;
      }
    }
    return false;
  };

  // -- what the city has: the layer catalogue with each layer's extent ----------------------
  /** The collection documents this viewer may see, by id (style, titles, and the extent when
   * the layer holds data); asked once per page. */
  Page.prototype.catalogue = function () {
    if (!this._catalogue) {
      this._catalogue = this.get(this.cfg.sources.catalogue).then(function (answer) {
        var byId = {};
        (answer.collections || []).forEach(function (c) {
          byId[c.id] = c;
        });
        return byId;
      });
    }
    return this._catalogue;
  };

  /** [west, south, east, north] of a collection's data, or null (no such layer, or empty). */
  GeoMap.extentOf = function (doc) {
    var e = doc && doc.extent && doc.extent.spatial && doc.extent.spatial.bbox;
    return e && e.length ? e[0] : null;
  };

  /** Leaflet bounds of a WGS-84 bbox, corners shifted like the overlays. */
  Page.prototype.boxBounds = function (bbox) {
    var page = this;
    return L.latLngBounds(
      [[bbox[0], bbox[1]], [bbox[0], bbox[3]], [bbox[2], bbox[1]], [bbox[2], bbox[3]]].map(
        function (c) {
          return page.toLatLng(c[0], c[1]);
        }
      )
    );
  };

  // The city's extent, by preference: its grids and communities (what the views are about);
  // without them whatever else it has (a city imported from OpenStreetMap has streets,
  // buildings and centres only); its incidents last. Later groups never widen an earlier one:
  // one incident reported 30 km away must not shrink the city to a dot.
  GeoMap.CITY = [
    ["grids", "communities"],
    ["centers", "coverage_isochrones", "coverage_tiers", "coverage_gaps", "buildings", "streets"],
    ["incidents"],
  ];

  /** The bounds of the city's data (see GeoMap.CITY), or null when it has none. */
  Page.prototype.cityBounds = async function () {
    var docs = await this.catalogue();
    for (var i = 0; i < GeoMap.CITY.length; i++) {
      var bounds = null;
      for (var j = 0; j < GeoMap.CITY[i].length; j++) {
        var bbox = GeoMap.extentOf(docs[GeoMap.CITY[i][j]]);
        if (!bbox) continue;
        var b = this.boxBounds(bbox);
        bounds = bounds ? bounds.extend(b) : b;
      }
      if (bounds) return bounds;
    }
    return null;
  };

  /** Open the map on the city's data, whatever it has; page.city keeps its bounds (null when
   * the database is empty: the map stays at its opening view and the notes say why). */
  Page.prototype.fitCity = async function () {
    this.city = await this.cityBounds();
    if (this.city) this.fitBounds(this.city);
    document.body.setAttribute("data-geomap-fitted", this.city ? "1" : "0");
    return this.city;
  };

  /** A visible note of the layers this view needs that hold no data yet. `needs`: one entry
   * per layer, {id, zh, en (what it is), whyZh, whyEn (what needs it), kind (import kind)}.
   * Returns the ids missing; body[data-geomap-missing] lists them for tests. */
  Page.prototype.missing = async function (needs) {
    var docs = await this.catalogue();
    var absent = needs.filter(function (n) {
      return !GeoMap.extentOf(docs[n.id]);
    });
    document.body.setAttribute(
      "data-geomap-missing",
      absent
        .map(function (n) {
          return n.id;
        })
        .join(",")
    );
    if (!absent.length) return [];
    var box = L.DomUtil.create("div", "gm-section gm-missing");
    box.id = "gm-missing";
    box.innerHTML = absent
      .map(function (n) {
        return (
          '<div class="gm-warn">' + GeoMap.bi("尚未导入" + n.zh, "No " + n.en + " imported yet") +
          ": " + GeoMap.bi(n.whyZh, n.whyEn) +
          (n.kind ? " · <code>geo-service import " + esc(n.kind) + " FILE</code>" : "") + "</div>"
        );
      })
      .join("");
    // Right under the title and status, where the eye lands first.
    this.panel._div.querySelector(".gm-status").insertAdjacentElement("afterend", box);
    return absent.map(function (n) {
      return n.id;
    });
  };

  /** What each layer is and what needs it, for page.missing (a view picks its own). */
  GeoMap.NEEDS = {
    grids: { id: "grids", kind: "grids", zh: "网格", en: "grids" },
    communities: { id: "communities", kind: "communities", zh: "社区", en: "communities" },
    centers: { id: "centers", kind: "centers", zh: "邻里中心", en: "centres" },
    buildings: { id: "buildings", kind: "buildings", zh: "楼栋", en: "buildings" },
    streets: { id: "streets", kind: "roads", zh: "道路", en: "streets" },
  };

  /** An entry of GeoMap.NEEDS with why this view needs it. */
  GeoMap.need = function (id, whyZh, whyEn) {
    return Object.assign({}, GeoMap.NEEDS[id], { whyZh: whyZh, whyEn: whyEn });
  };

  // -- start -----------------------------------------------------------------------------------
  GeoMap.start = function (args) {
    var page = new Page(args);
    GeoMap.pages.push(page);
    var cfg = page.cfg;
    document.title = cfg.title.zh + " " + cfg.title.en + " · geo-service";
    makeControls();
    page.panel = new Panel().addTo(page.map);
    var head = '<div class="gm-title">' + GeoMap.bi(cfg.title.zh, cfg.title.en) + "</div>";
    head +=
      '<div class="gm-sub">' +
      GeoMap.bi("底图", "Basemap") +
      ": " +
      GeoMap.bi(cfg.basemap.zh, cfg.basemap.en) +
      (page.crs === "gcj02" ? ' <span class="gm-tag">GCJ-02</span>' : "") +
      (cfg.interactive ? "" : ' <span class="gm-tag">' + GeoMap.bi("静态导出", "static export") + "</span>") +
      "</div>";
    page.panel._div.innerHTML = head + '<div class="gm-status">' + GeoMap.bi("加载中…", "Loading…") + "</div>";
    page.legend = new Legend().addTo(page.map);
    var view = GeoMap.views[cfg.view];
    if (!view) {
      page.fail(new Error("unknown view " + cfg.view));
      return page;
    }
    Promise.resolve()
      .then(function () {
        return view(page);
      })
      .catch(function (err) {
        page.fail(err);
      });
    return page;
  };

  global.GeoMap = GeoMap;
})(window);
