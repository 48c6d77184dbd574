/* realtime-bridge.js, the optional helper for the realtime_bridge gateway's /sse (EventSource
 * works without it): events once each and in seq order, a heartbeat watchdog, token renewal that
 * resumes. A classic script defining globalThis.RealtimeBridge. API, behaviour: docs/browser.md */
(function (root) {
  "use strict";

  const DEFAULTS = { heartbeat: 15, watchdog: 2.5, holdMs: 1000, maxHeld: 100, rememberIds: 1000,
    retryMs: 1000, maxRetryMs: 30000 }; // the options' meanings: docs/browser.md
  const CLOSED = 2; // EventSource.CLOSED: the browser will not retry by itself
  const report = (error) => (root.reportError || root.console.error)(error);

  class Feed {
    constructor(baseUrl, options) {
      if (!options || (!options.token && typeof options.getToken !== "function")) {
        throw new TypeError("RealtimeBridge.subscribe: pass options.token or options.getToken");
      }
      if (options.channels !== undefined && !Array.isArray(options.channels)) {
        throw new TypeError("RealtimeBridge.subscribe: options.channels must be an array");
      }
      this.options = Object.assign({}, DEFAULTS, options);
      this.url = String(baseUrl || "").replace(/\/+$/, "") + "/sse";
      this.token = options.token || null;
      this.lastEventId = options.lastEventId || "";
      this.status = null;
      this.stats = { received: 0, delivered: 0, duplicates: 0, gaps: 0, reopens: 0 };
      this._ids = new Set(); // in arrival order, so the oldest is the first to forget
      this._channels = new Map(); // name -> {name, last: seq | null, held: Map(seq, envelope)}
      this._source = null;
      this._timers = { watchdog: null, retry: null };
      this._heartbeat = this.options.heartbeat;
      this._failures = 0;
      this._generation = 0; // an _open still awaiting getToken() gives up when it has moved on
      this._open("connecting");
    }

    close() {
      this._stop();
      this._generation++;
      this._channels.forEach((channel) => clearTimeout(channel.timer));
      this._status("closed", "closed");
    }

    async _open(state, reason) {
      const generation = ++this._generation;
      if (state === "reconnecting") this.stats.reopens++;
      this._stop();
      this._status(state, reason);
      try {
        if (!this.token) this.token = await this.options.getToken();
      } catch (error) {
        report(error);
      }
      if (generation !== this._generation) return; // closed or reopened meanwhile
      if (!this.token) return this._retryLater("token");
      const url = new URL(this.url, root.location && root.location.href);
      url.searchParams.set("token", this.token);
      (this.options.channels || []).forEach((name) => url.searchParams.append("channel", name));
      if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
      const source = (this._source = new (this.options.EventSource || root.EventSource)(url.href));
      const handlers = { message: this._onMessage, ready: this._onReady, reset: this._onReset,
        heartbeat() {}, expired: this._onExpired };
      for (const [name, handle] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          if (source !== this._source) return; // closed: a late event of an old connection
          if (event.lastEventId) this.lastEventId = event.lastEventId;
          this._kick();
          handle.call(this, event);
        });
      }
      source.addEventListener("error", () => source === this._source && this._onError());
      this._kick();
    }

    _stop() {
      if (this._source) this._source.close();
      this._source = null;
      clearTimeout(this._timers.watchdog);
      clearTimeout(this._timers.retry);
    }

    _kick() { // a word from the gateway: the connection is alive for `watchdog` heartbeats more
      clearTimeout(this._timers.watchdog);
      const ms = this._heartbeat * this.options.watchdog * 1000;
      this._timers.watchdog = setTimeout(() => this._open("reconnecting", "stalled"), ms);
    }

    _retryLater(reason) {
      this._stop();
      const { retryMs, maxRetryMs } = this.options;
      const ms = Math.min(retryMs * 2 ** this._failures++, maxRetryMs) * (0.5 + Math.random() / 2);
      this._status("reconnecting", reason);
      this._timers.retry = setTimeout(() => this._open("reconnecting", reason), ms);
    }

    _onError() {
      if (this._source.readyState !== CLOSED) return this._status("reconnecting", "error");
      // The browser gave up (an HTTP error: maybe a token that expired while the page slept).
      if (typeof this.options.getToken === "function") this.token = null;
      this._retryLater("error");
    }

    _onReady(event) {
      const ready = JSON.parse(event.data);
      this._heartbeat = ready.heartbeat || this._heartbeat;
      this._failures = 0;
      this._kick();
      this._status("open", null);
      this._call("onReady", ready);
    }

    _onExpired() {
      this._stop(); // before the browser retries with the old token
      if (typeof this.options.getToken !== "function") return this._status("closed", "expired");
      this.token = null;
      this._open("reconnecting", "expired");
    }

    _status(state, reason = null) {
      if (state === this.status && reason === this._reason) return;
      this.status = state;
      this._reason = reason;
      this._call("onStatus", state, reason);
    }

    _call(name, ...args) {
      try {
        if (typeof this.options[name] === "function") this.options[name](...args);
      } catch (error) {
        report(error); // one failing callback must not stop the stream
      }
    }

    _onMessage(event) {
      const envelope = JSON.parse(event.data);
      this.stats.received++;
      if (this._ids.has(envelope.id)) return this.stats.duplicates++;
      this._ids.add(envelope.id);
      const { rememberIds, maxHeld, holdMs } = this.options;
      if (this._ids.size > rememberIds) this._ids.delete(this._ids.values().next().value);
      if (envelope.seq === null || envelope.seq === undefined) return this._deliver(null, envelope);
      const channel = this._channel(envelope.channel);
      const { seq } = envelope;
      if ((channel.last !== null && seq <= channel.last) || channel.held.has(seq)) {
        return this.stats.duplicates++;
      }
      if (channel.last === null || seq === channel.last + 1) {
        this._deliver(channel, envelope);
        return this._drain(channel);
      }
      channel.held.set(seq, envelope);
      if (channel.held.size > maxHeld) return this._flush(channel, true);
      channel.timer = channel.timer || setTimeout(() => this._flush(channel, true), holdMs);
    }

    _channel(name) { // its order: the last seq delivered, and the events held for later
      const channel = this._channels.get(name) || { name, last: null, held: new Map() };
      this._channels.set(name, channel);
      return channel;
    }

    _deliver(channel, envelope) {
      if (channel) channel.last = envelope.seq;
      this.stats.delivered++;
      this._call("onEvent", envelope);
    }

    _drain(channel) { // deliver the held events that are now next in line
      for (let next; (next = channel.held.get(channel.last + 1)); ) {
        channel.held.delete(next.seq);
        this._deliver(channel, next);
      }
      if (channel.held.size === 0) channel.timer = clearTimeout(channel.timer) || null;
    }

    _flush(channel, reportGaps) { // stop waiting: every held event, in seq order
      channel.timer = clearTimeout(channel.timer) || null;
      for (const seq of Array.from(channel.held.keys()).sort((a, b) => a - b)) {
        if (reportGaps && seq > channel.last + 1) {
          this.stats.gaps++;
          this._call("onGap", { channel: channel.name, from: channel.last + 1, to: seq - 1 });
        }
        this._deliver(channel, channel.held.get(seq));
      }
      channel.held.clear();
    }

    _onReset(event) {
      const { channel: name, reason, id } = JSON.parse(event.data);
      const channel = this._channels.get(name);
      if (channel) {
        this._flush(channel, false); // what arrived is real; the re-fetch covers the rest
        this._channels.delete(name); // the channel's next event starts its order anew
      }
      this._call("onReset", { channel: name, reason, id });
    }
  }

  root.RealtimeBridge = { subscribe: (baseUrl, options) => new Feed(baseUrl, options), DEFAULTS };
})(typeof globalThis !== "undefined" ? globalThis : window);
