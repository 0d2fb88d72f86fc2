//! The TUI's state and its rules, without a terminal: inputs (keys, status polls,
//! events, action replies) go in through [`App::update`], which may ask the loop for
//! one [`Effect`] (send an action to dnsd, run an extra key, quit). Rendering reads
//! the state (see `ui`); tests drive `update` directly.
//!
//! A program running the live view may add [`Extras`]: a banner line and keys of its
//! own that act on the selected member or the selected terminal server (the demo's kill
//! and revive). The app knows them only as data; the program runs them when the loop
//! hands it [`Effect::Extra`]. In a cluster, `t` moves the terminal-server selection
//! (when the program has keys for terminal servers), and a follower's `not_leader`
//! refusal is shown with how to reach the leader.
//!
//! Keys are first decoded into an [`Action`] according to what is on screen (a dialog,
//! the help, the filter prompt or the main view), then applied. Every change marks the
//! app dirty, and the loop redraws only then.

use std::cell::Cell;
use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use dnsd_api::{
    Action as Request, ActionReply, Event, MemberStatus, RefusalKind, ServiceStatus, Status,
};

use crate::client::ClientError;
use crate::plan::{self, Plan};

/// Most events kept for the log view.
const EVENT_CAPACITY: usize = 5000;

/// Something that happened outside the app.
#[derive(Debug)]
pub enum Input {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// A fresh status from dnsd.
    Status(Box<Status>),
    /// The console now talks to another dnsd (a cluster client moved on from one it
    /// could not reach, or to the leader).
    Endpoint(String),
    /// dnsd could not be reached (or answered nonsense); the poller retries.
    Unreachable { error: String, attempt: u32 },
    /// An event from the log or the live stream.
    Event(Box<Event>),
    /// dnsd restarted: its event log starts over.
    EventsReset,
    /// dnsd answered an action (or it could not be sent).
    ActionDone {
        request: Request,
        outcome: Result<ActionReply, ClientError>,
    },
    /// An extra key's command finished: what it did, or why it failed.
    ExtraDone {
        key: char,
        target: String,
        outcome: anyhow::Result<String>,
    },
}

/// What the user asked for, decoded from a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    NextService,
    PrevService,
    ToggleFocus,
    /// Ask dnsd to do something (after a confirmation, if it needs one).
    Ask(Request),
    Confirm,
    Cancel,
    Help,
    Dismiss,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterCancel,
    ClearFilter,
    /// Select the next terminal server (for the extras' keys on terminal servers).
    NextTerminalServer,
    /// An extra key on the selected member or terminal server.
    Extra {
        key: char,
        target: String,
    },
    /// Explain why a key did nothing (no member selected, ...).
    Hint(String),
}

/// What the loop must do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this action to dnsd; its reply comes back as [`Input::ActionDone`].
    Send(Request),
    /// Run extra key `key` on `target` (a member or a terminal server, as the key
    /// says); its result comes back as [`Input::ExtraDone`].
    Extra { key: char, target: String },
    /// Leave the TUI.
    Quit,
}

/// Which panel the movement keys act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Members,
    Events,
}

/// How the console stands with dnsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The last poll was answered.
    Up,
    /// The last poll failed; the poller is retrying.
    Down { error: String, attempt: u32 },
}

/// What covers the main view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// Waiting for `y` before sending `request`.
    Confirm {
        request: Request,
        plan: Plan,
    },
    /// dnsd refused an action, or it could not be sent.
    Reply {
        title: String,
        message: String,
    },
}

/// A one-line result under the main view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

/// What a program running the live view adds to it (the demo: its hint line, and keys
/// that kill and revive a member or a terminal server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    /// Who adds them, as the label of the banner line and the prefix of the keys'
    /// results ("demo").
    pub name: String,
    /// One line under the header (the demo: what to try, `dig ...`).
    pub banner: String,
    /// Keys of its own, each acting on the selected member or terminal server.
    pub keys: Vec<ExtraKey>,
    /// The terminal servers the program runs, listed even while they are not live (a
    /// killed one vanishes from dnsd's status when its lease ends, and is revived from
    /// this list).
    pub terminal_servers: Vec<String>,
}

/// A key of the [`Extras`], acting on the selected member or terminal server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraKey {
    /// A key the view does not use itself (such a key would never reach the extras).
    pub key: char,
    /// What it does, in one word, for the key line and hints ("kill").
    pub verb: String,
    /// What it does, for the help ("demo: kill the selected member ...").
    pub help: String,
    /// What it acts on.
    pub target: Target,
}

/// What an extra key acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The selected member (`↑`/`↓`).
    Member,
    /// The selected terminal server (`t`).
    TerminalServer,
}

impl Extras {
    /// The extra key `key`, if there is one.
    pub fn key(&self, key: char) -> Option<&ExtraKey> {
        self.keys.iter().find(|k| k.key == key)
    }

    /// Whether some key acts on terminal servers (then `t` selects one).
    pub fn on_terminal_servers(&self) -> bool {
        self.keys.iter().any(|k| k.target == Target::TerminalServer)
    }
}

/// The console's state.
#[derive(Debug)]
pub struct App {
    pub(crate) endpoint: String,
    pub(crate) status: Option<Status>,
    /// Console clock when `status` arrived.
    pub(crate) status_at_ms: u64,
    pub(crate) link: Link,
    pub(crate) events: VecDeque<Event>,
    pub(crate) service: Option<String>,
    pub(crate) node: Option<String>,
    /// The selected terminal server, for the extras' keys on terminal servers.
    pub(crate) terminal_server: Option<String>,
    pub(crate) focus: Focus,
    /// Event lines scrolled up from the newest (0: follow the newest).
    pub(crate) event_scroll: usize,
    /// First member row shown; kept by the renderer so the selection stays visible.
    pub(crate) member_offset: Cell<usize>,
    /// Member rows that fit, as last rendered (the page of PageUp/PageDown).
    pub(crate) member_page: Cell<usize>,
    /// Event lines that fit, as last rendered.
    pub(crate) event_page: Cell<usize>,
    pub(crate) filter: String,
    /// While the filter is being typed: the filter to restore on Esc.
    pub(crate) filter_before: Option<String>,
    pub(crate) overlay: Overlay,
    pub(crate) notice: Option<Notice>,
    /// The action sent and not answered yet.
    pub(crate) in_flight: Option<String>,
    pub(crate) extras: Option<Extras>,
    /// The console's clock, ms since the Unix epoch; set by the loop (and by tests).
    pub(crate) now_ms: u64,
    dirty: bool,
}

impl App {
    /// An app watching dnsd at `endpoint` (shown in the header and the banner).
    pub fn new(endpoint: impl Into<String>) -> App {
        App {
            endpoint: endpoint.into(),
            status: None,
            status_at_ms: 0,
            link: Link::Connecting,
            events: VecDeque::new(),
            service: None,
            node: None,
            terminal_server: None,
            focus: Focus::Members,
            event_scroll: 0,
            member_offset: Cell::new(0),
            member_page: Cell::new(10),
            event_page: Cell::new(5),
            filter: String::new(),
            filter_before: None,
            overlay: Overlay::None,
            notice: None,
            in_flight: None,
            extras: None,
            now_ms: 0,
            dirty: true,
        }
    }

    /// Adds a program's banner line and keys.
    pub fn with_extras(mut self, extras: Extras) -> App {
        self.extras = Some(extras);
        self
    }

    /// Sets the console's clock (times on screen are relative to it).
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Whether something changed since the last call: the loop redraws only then.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The last status, if any.
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    /// What covers the main view (a dialog, the help), if anything.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The last action's result, as shown under the main view.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// How the console stands with dnsd.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The selected service's name.
    pub fn selected_service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The selected member's name.
    pub fn selected_node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The selected terminal server's name.
    pub fn selected_terminal_server(&self) -> Option<&str> {
        self.terminal_server.as_deref()
    }

    /// The terminal servers to show: the program's own first (in its order, live or
    /// not), then any other live one dnsd knows, by name.
    pub fn terminal_servers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .extras
            .as_ref()
            .map(|x| x.terminal_servers.clone())
            .unwrap_or_default();
        if let Some(cluster) = self.status.as_ref().and_then(|s| s.cluster.as_ref()) {
            let mut live: Vec<&str> = cluster.servers.iter().map(|s| s.name.as_str()).collect();
            live.sort_unstable();
            for name in live {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
        names
    }

    /// The filter on members and events ("" when none).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Applies one input; returns what the loop must do, if anything.
    pub fn update(&mut self, input: Input) -> Option<Effect> {
        match input {
            Input::Key(key) => {
                let action = self.decode(key)?;
                self.dirty = true;
                self.apply(action)
            }
            Input::Resize => {
                self.dirty = true;
                None
            }
            Input::Status(status) => {
                self.dirty = true;
                self.status = Some(*status);
                self.status_at_ms = self.now_ms;
                self.link = Link::Up;
                self.fix_selection();
                None
            }
            Input::Endpoint(endpoint) => {
                self.dirty = true;
                self.endpoint = endpoint;
                None
            }
            Input::Unreachable { error, attempt } => {
                self.dirty = true;
                self.link = Link::Down { error, attempt };
                None
            }
            Input::Event(event) => {
                self.push_event(*event);
                None
            }
            Input::EventsReset => {
                self.dirty = true;
                self.events.clear();
                self.event_scroll = 0;
                None
            }
            Input::ActionDone { request, outcome } => {
                self.dirty = true;
                self.in_flight = None;
                self.action_done(&request, outcome);
                None
            }
            Input::ExtraDone {
                key,
                target,
                outcome,
            } => {
                self.dirty = true;
                self.notice = Some(match outcome {
                    Ok(text) => Notice { ok: true, text },
                    Err(e) => Notice {
                        ok: false,
                        text: format!("{} failed: {e:#}", self.extra_title(key, &target)),
                    },
                });
                None
            }
        }
    }

    fn push_event(&mut self, event: Event) {
        if self
            .events
            .back()
            .is_some_and(|last| event.seq != 0 && event.seq <= last.seq)
        {
            return;
        }
        let shown = self.event_matches(&event);
        self.events.push_back(event);
        if self.events.len() > EVENT_CAPACITY {
            self.events.pop_front();
        }
        // Scrolled back: keep the same lines on screen while new ones arrive.
        if shown && self.event_scroll > 0 {
            self.event_scroll += 1;
        }
        self.dirty = true;
    }

    /// "demo: kill app1": an extra key's command, for its notices.
    fn extra_title(&self, key: char, target: &str) -> String {
        match &self.extras {
            Some(x) => {
                let verb = x.key(key).map_or("", |k| k.verb.as_str());
                format!("{}: {verb} {target}", x.name)
            }
            None => format!("{key} {target}"),
        }
    }

    fn action_done(&mut self, request: &Request, outcome: Result<ActionReply, ClientError>) {
        match outcome {
            Ok(reply) if reply.accepted => {
                self.notice = Some(Notice {
                    ok: true,
                    text: format!("{request}: {}", reply.message),
                });
            }
            Ok(reply) => {
                self.notice = Some(Notice {
                    ok: false,
                    text: format!("refused {request}: {}", reply.message),
                });
                let mut message = reply.message;
                if reply.kind == Some(RefusalKind::NotLeader) {
                    message.push_str(&match crate::render::contact_url(&message) {
                        Some(url) => format!(
                            "\n\nThis terminal server follows; the leader takes actions. Open \
                             the console on it:  console --url {url} --token-file FILE"
                        ),
                        None => "\n\nThis terminal server follows; the leader takes actions, and \
                                 published no control URL: open the console on its host."
                            .to_owned(),
                    });
                }
                self.overlay = Overlay::Reply {
                    title: format!("dnsd refused: {request}"),
                    message,
                };
            }
            Err(error) => {
                self.notice = Some(Notice {
                    ok: false,
                    text: format!("{request} not sent: {error}"),
                });
                self.overlay = Overlay::Reply {
                    title: format!("could not send: {request}"),
                    message: error.to_string(),
                };
            }
        }
    }

    /// Decodes a key according to what is on screen.
    pub fn decode(&self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            return Some(Action::Quit);
        }
        if self.filter_before.is_some() {
            return match key.code {
                KeyCode::Enter => Some(Action::FilterDone),
                KeyCode::Esc => Some(Action::FilterCancel),
                KeyCode::Backspace => Some(Action::FilterBackspace),
                KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
                _ => None,
            };
        }
        match &self.overlay {
            Overlay::Confirm { .. } => {
                return Some(match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => Action::Confirm,
                    _ => Action::Cancel,
                });
            }
            Overlay::Help | Overlay::Reply { .. } => return Some(Action::Dismiss),
            Overlay::None => {}
        }
        let action = match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => Action::Up,
            KeyCode::Down | KeyCode::Char('j') => Action::Down,
            KeyCode::PageUp => Action::PageUp,
            KeyCode::PageDown => Action::PageDown,
            KeyCode::Home | KeyCode::Char('g') => Action::Home,
            KeyCode::End | KeyCode::Char('G') => Action::End,
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Char(']') => Action::NextService,
            KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('[') => Action::PrevService,
            KeyCode::Tab | KeyCode::BackTab => Action::ToggleFocus,
            KeyCode::Char('?') => Action::Help,
            KeyCode::Char('/') => Action::StartFilter,
            KeyCode::Esc if !self.filter.is_empty() => Action::ClearFilter,
            KeyCode::Char('f') => Action::Ask(Request::Failover {
                service: self.service.clone(),
            }),
            KeyCode::Char('b') => Action::Ask(Request::Failback {
                service: self.service.clone(),
            }),
            KeyCode::Char('s') => Action::Ask(Request::Sync {
                service: self.service.clone(),
                node: None,
            }),
            KeyCode::Char('P') => {
                let paused = self.current_service().is_some_and(|s| s.paused);
                let service = self.service.clone();
                Action::Ask(if paused {
                    Request::Resume { service }
                } else {
                    Request::Pause { service }
                })
            }
            KeyCode::Char('p') => match &self.node {
                Some(node) => Action::Ask(Request::Promote {
                    service: self.service.clone(),
                    node: node.clone(),
                }),
                None => Action::Hint("select a member to promote first (↑/↓)".into()),
            },
            KeyCode::Char('m') => match &self.node {
                Some(node) => {
                    let on = !self
                        .status
                        .as_ref()
                        .and_then(|s| s.node(node))
                        .is_some_and(|n| n.maintenance);
                    Action::Ask(Request::Maintenance {
                        node: node.clone(),
                        on,
                    })
                }
                None => Action::Hint("select a member first (↑/↓)".into()),
            },
            KeyCode::Char('u') => match &self.node {
                Some(node) => Action::Ask(Request::Unquarantine {
                    service: self.service.clone(),
                    node: node.clone(),
                }),
                None => Action::Hint("select a quarantined member first (↑/↓)".into()),
            },
            KeyCode::Char('t')
                if self
                    .extras
                    .as_ref()
                    .is_some_and(Extras::on_terminal_servers) =>
            {
                Action::NextTerminalServer
            }
            KeyCode::Char(c) => {
                let extra = self.extras.as_ref().and_then(|x| x.key(c))?;
                let selected = match extra.target {
                    Target::Member => &self.node,
                    Target::TerminalServer => &self.terminal_server,
                };
                match (selected, extra.target) {
                    (Some(target), _) => Action::Extra {
                        key: c,
                        target: target.clone(),
                    },
                    (None, Target::Member) => {
                        Action::Hint(format!("select a member to {} first (↑/↓)", extra.verb))
                    }
                    (None, Target::TerminalServer) => Action::Hint(format!(
                        "select a terminal server to {} first (t)",
                        extra.verb
                    )),
                }
            }
            _ => return None,
        };
        Some(action)
    }

    /// Applies a decoded action.
    pub fn apply(&mut self, action: Action) -> Option<Effect> {
        self.dirty = true;
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-(self.page() as isize)),
            Action::PageDown => self.step(self.page() as isize),
            Action::Home => self.step(isize::MIN / 2),
            Action::End => self.step(isize::MAX / 2),
            Action::NextService => self.cycle_service(1),
            Action::PrevService => self.cycle_service(-1),
            Action::ToggleFocus => {
                self.focus = match self.focus {
                    Focus::Members => Focus::Events,
                    Focus::Events => Focus::Members,
                }
            }
            Action::Ask(request) => {
                if plan::needs_confirmation(&request) {
                    let plan = plan::describe(&request, self.status.as_ref());
                    self.overlay = Overlay::Confirm { request, plan };
                } else {
                    return Some(self.send(request));
                }
            }
            Action::Confirm => {
                if let Overlay::Confirm { request, .. } =
                    std::mem::replace(&mut self.overlay, Overlay::None)
                {
                    return Some(self.send(request));
                }
            }
            Action::Cancel => {
                if let Overlay::Confirm { request, .. } =
                    std::mem::replace(&mut self.overlay, Overlay::None)
                {
                    self.notice = Some(Notice {
                        ok: true,
                        text: format!("cancelled: {request}"),
                    });
                }
            }
            Action::Help => self.overlay = Overlay::Help,
            Action::Dismiss => self.overlay = Overlay::None,
            Action::StartFilter => self.filter_before = Some(self.filter.clone()),
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.filter_changed();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.filter_changed();
            }
            Action::FilterDone => self.filter_before = None,
            Action::FilterCancel => {
                if let Some(before) = self.filter_before.take() {
                    self.filter = before;
                    self.filter_changed();
                }
            }
            Action::ClearFilter => {
                self.filter.clear();
                self.filter_changed();
            }
            Action::NextTerminalServer => {
                let names = self.terminal_servers();
                let at = self
                    .terminal_server
                    .as_ref()
                    .and_then(|t| names.iter().position(|n| n == t));
                let next = at.map_or(0, |i| (i + 1) % names.len().max(1));
                self.terminal_server = names.get(next).cloned();
            }
            Action::Extra { key, target } => {
                self.notice = Some(Notice {
                    ok: true,
                    text: format!("{}…", self.extra_title(key, &target)),
                });
                return Some(Effect::Extra { key, target });
            }
            Action::Hint(text) => self.notice = Some(Notice { ok: false, text }),
        }
        None
    }

    fn send(&mut self, request: Request) -> Effect {
        self.in_flight = Some(request.to_string());
        self.notice = None;
        Effect::Send(request)
    }

    fn page(&self) -> usize {
        match self.focus {
            Focus::Members => self.member_page.get(),
            Focus::Events => self.event_page.get(),
        }
        .max(1)
    }

    fn step(&mut self, by: isize) {
        match self.focus {
            Focus::Members => {
                let names: Vec<String> = self
                    .visible_members()
                    .iter()
                    .map(|m| m.node.clone())
                    .collect();
                if names.is_empty() {
                    return;
                }
                let at = self
                    .node
                    .as_ref()
                    .and_then(|n| names.iter().position(|m| m == n))
                    .unwrap_or(0) as isize;
                let to = (at.saturating_add(by)).clamp(0, names.len() as isize - 1) as usize;
                self.node = Some(names[to].clone());
            }
            Focus::Events => {
                // Up scrolls back in time.
                let max = self.visible_events().len().saturating_sub(1);
                let scroll = (self.event_scroll as isize).saturating_sub(by);
                self.event_scroll = scroll.clamp(0, max as isize) as usize;
            }
        }
    }

    fn cycle_service(&mut self, by: isize) {
        let Some(status) = &self.status else { return };
        let n = status.services.len();
        if n == 0 {
            return;
        }
        let at = self
            .service
            .as_ref()
            .and_then(|s| status.services.iter().position(|x| &x.name == s))
            .unwrap_or(0) as isize;
        let to = (at + by).rem_euclid(n as isize) as usize;
        self.service = Some(status.services[to].name.clone());
        self.member_offset.set(0);
        self.fix_selection();
    }

    fn filter_changed(&mut self) {
        self.event_scroll = 0;
        self.member_offset.set(0);
        self.fix_selection();
    }

    /// Keeps the selected service and member pointing at something that exists and
    /// is shown.
    fn fix_selection(&mut self) {
        let Some(status) = &self.status else { return };
        let exists = self
            .service
            .as_ref()
            .is_some_and(|s| status.service(s).is_some());
        if !exists {
            self.service = status.services.first().map(|s| s.name.clone());
        }
        let visible = self.visible_members();
        let shown = self
            .node
            .as_ref()
            .is_some_and(|n| visible.iter().any(|m| &m.node == n));
        if !shown {
            self.node = visible.first().map(|m| m.node.clone());
        }
        // Keys on terminal servers start on the leader, the one whose loss shows most.
        if self.terminal_server.is_none()
            && self
                .extras
                .as_ref()
                .is_some_and(Extras::on_terminal_servers)
        {
            let leader = self
                .status
                .as_ref()
                .and_then(|s| s.cluster.as_ref())
                .and_then(|c| c.leader.clone());
            self.terminal_server = leader.or_else(|| self.terminal_servers().into_iter().next());
        }
    }

    /// The selected service's status.
    pub fn current_service(&self) -> Option<&ServiceStatus> {
        let status = self.status.as_ref()?;
        match &self.service {
            Some(name) => status.service(name),
            None => status.services.first(),
        }
    }

    /// The selected service's members that pass the filter, in round-robin order.
    pub fn visible_members(&self) -> Vec<&MemberStatus> {
        let Some(svc) = self.current_service() else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        svc.members
            .iter()
            .filter(|m| {
                needle.is_empty()
                    || m.node.to_lowercase().contains(&needle)
                    || self
                        .status
                        .as_ref()
                        .and_then(|s| s.node(&m.node))
                        .is_some_and(|n| n.address.contains(&needle))
            })
            .collect()
    }

    fn event_matches(&self, e: &Event) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let needle = self.filter.to_lowercase();
        let fields = [
            e.service.as_deref(),
            e.node.as_deref(),
            e.old_primary.as_deref(),
            e.new_primary.as_deref(),
            Some(e.reason.as_str()),
        ];
        e.kind.to_string().contains(&needle)
            || fields
                .iter()
                .flatten()
                .any(|f| f.to_lowercase().contains(&needle))
    }

    /// Events that pass the filter, oldest first.
    pub fn visible_events(&self) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| self.event_matches(e))
            .collect()
    }

    /// How old the shown status is, by the console's clock.
    pub fn status_age_ms(&self) -> u64 {
        self.now_ms.saturating_sub(self.status_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn key(c: char) -> Input {
        Input::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn code(code: KeyCode) -> Input {
        Input::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn app_with(status: Status) -> App {
        let mut app = App::new("unix:/run/dnsd/control.sock");
        app.set_now(fixtures::NOW);
        app.update(Input::Status(Box::new(status)));
        app
    }

    #[test]
    fn selection_starts_on_the_first_member_and_stays_in_bounds() {
        let mut app = app_with(fixtures::three_members());
        assert_eq!(app.selected_service(), Some("www"));
        assert_eq!(app.selected_node(), Some("app1"));
        app.update(code(KeyCode::Down));
        app.update(key('j'));
        assert_eq!(app.selected_node(), Some("app3"));
        app.update(code(KeyCode::Down));
        assert_eq!(app.selected_node(), Some("app3"), "stops at the last");
        app.update(code(KeyCode::Home));
        assert_eq!(app.selected_node(), Some("app1"));
        app.update(code(KeyCode::Right));
        assert_eq!(app.selected_service(), Some("api"));
        assert_eq!(app.selected_node(), Some("app2"), "the first member of api");
        app.update(code(KeyCode::Right));
        assert_eq!(app.selected_service(), Some("www"), "wraps around");
    }

    #[test]
    fn paging_moves_by_the_rendered_page() {
        let mut app = app_with(fixtures::many_members(500));
        app.member_page.set(20);
        app.update(code(KeyCode::PageDown));
        assert_eq!(app.selected_node(), Some("app21"));
        app.update(code(KeyCode::End));
        assert_eq!(app.selected_node(), Some("app500"));
        app.update(code(KeyCode::PageUp));
        assert_eq!(app.selected_node(), Some("app480"));
    }

    #[test]
    fn promote_asks_first_and_sends_only_on_y() {
        let mut app = app_with(fixtures::three_members());
        app.update(key('j'));
        assert_eq!(app.update(key('p')), None);
        let Overlay::Confirm { request, plan } = app.overlay().clone() else {
            panic!("no confirmation: {:?}", app.overlay());
        };
        assert_eq!(
            request,
            Request::Promote {
                service: Some("www".into()),
                node: "app2".into()
            }
        );
        assert_eq!(plan.question, "Promote app2 to primary of www?");
        // Movement keys do not slip through the dialog: anything but y cancels.
        assert_eq!(app.update(key('j')), None);
        assert_eq!(app.overlay(), &Overlay::None);
        assert_eq!(app.selected_node(), Some("app2"));
        app.update(key('p'));
        assert_eq!(
            app.update(key('y')),
            Some(Effect::Send(Request::Promote {
                service: Some("www".into()),
                node: "app2".into()
            }))
        );
        assert_eq!(app.overlay(), &Overlay::None);
    }

    #[test]
    fn every_action_that_moves_a_primary_or_a_rule_is_confirmed_but_sync_is_not() {
        let mut app = app_with(fixtures::three_members());
        for c in ['f', 'b', 'p', 'm', 'P'] {
            assert_eq!(app.update(key(c)), None, "{c} sent without asking");
            assert!(
                matches!(app.overlay(), Overlay::Confirm { .. }),
                "{c}: {:?}",
                app.overlay()
            );
            app.update(code(KeyCode::Esc));
            assert_eq!(app.overlay(), &Overlay::None);
        }
        assert_eq!(
            app.update(key('s')),
            Some(Effect::Send(Request::Sync {
                service: Some("www".into()),
                node: None
            }))
        );
    }

    #[test]
    fn pause_key_resumes_a_paused_service_and_maintenance_toggles() {
        let mut app = app_with(fixtures::sync_running());
        app.update(key('P'));
        let Overlay::Confirm { request, .. } = app.overlay().clone() else {
            panic!()
        };
        assert_eq!(
            request,
            Request::Pause {
                service: Some("www".into())
            }
        );
        app.update(key('n'));
        app.update(code(KeyCode::Right));
        app.update(key('P'));
        let Overlay::Confirm { request, .. } = app.overlay().clone() else {
            panic!()
        };
        assert_eq!(
            request,
            Request::Resume {
                service: Some("api".into())
            }
        );
        app.update(key('n'));
        app.update(code(KeyCode::Left));
        app.update(code(KeyCode::End));
        app.update(key('m'));
        let Overlay::Confirm { request, .. } = app.overlay().clone() else {
            panic!()
        };
        assert_eq!(
            request,
            Request::Maintenance {
                node: "app3".into(),
                on: false
            },
            "app3 is in maintenance: m takes it out"
        );
    }

    #[test]
    fn a_refusal_opens_a_dialog_with_the_reason_and_any_key_closes_it() {
        let mut app = app_with(fixtures::member_down());
        let request = Request::Promote {
            service: Some("www".into()),
            node: "app3".into(),
        };
        app.update(Input::ActionDone {
            request,
            outcome: Ok(ActionReply::refused(
                dnsd_api::RefusalKind::NotEligible,
                "app3 is down".into(),
            )),
        });
        assert_eq!(
            app.overlay(),
            &Overlay::Reply {
                title: "dnsd refused: promote app3 service www".into(),
                message: "app3 is down".into()
            }
        );
        assert!(!app.notice().unwrap().ok);
        app.update(code(KeyCode::Enter));
        assert_eq!(app.overlay(), &Overlay::None);
    }

    #[test]
    fn filter_narrows_members_and_events_and_esc_restores() {
        let mut app = app_with(fixtures::three_members());
        for e in fixtures::events() {
            app.update(Input::Event(Box::new(e)));
        }
        app.update(key('/'));
        for c in "app3".chars() {
            app.update(key(c));
        }
        let names: Vec<&str> = app
            .visible_members()
            .iter()
            .map(|m| m.node.as_str())
            .collect();
        assert_eq!(names, ["app3"]);
        assert_eq!(app.selected_node(), Some("app3"));
        assert_eq!(app.visible_events().len(), 1);
        // Keys are text while typing: 'q' does not quit.
        assert_eq!(app.update(key('q')), None);
        assert_eq!(app.filter(), "app3q");
        app.update(code(KeyCode::Backspace));
        app.update(code(KeyCode::Enter));
        assert_eq!(app.filter(), "app3");
        // Esc in the main view clears the filter.
        app.update(code(KeyCode::Esc));
        assert_eq!(app.filter(), "");
        assert_eq!(app.visible_members().len(), 3);
        // Esc while typing restores the filter from before.
        app.update(key('/'));
        app.update(key('x'));
        assert!(app.visible_members().is_empty());
        app.update(code(KeyCode::Esc));
        assert_eq!(app.filter(), "");
    }

    #[test]
    fn quit_keys_and_demo_keys() {
        let mut app = app_with(fixtures::three_members());
        assert_eq!(app.update(key('K')), None, "no demo keys outside the demo");
        assert_eq!(app.update(key('q')), Some(Effect::Quit));
        let ctrl_c = Input::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        app.update(key('?'));
        assert_eq!(
            app.update(ctrl_c),
            Some(Effect::Quit),
            "Ctrl-C quits from anywhere"
        );
        let key_for = |key: char, verb: &str| ExtraKey {
            key,
            verb: verb.into(),
            help: format!("{verb} the selected member"),
            target: Target::Member,
        };
        let extras = Extras {
            name: "demo".into(),
            banner: "dig ...".into(),
            keys: vec![key_for('K', "kill"), key_for('R', "revive")],
            terminal_servers: Vec::new(),
        };
        let mut demo = app_with(fixtures::three_members()).with_extras(extras);
        assert_eq!(
            demo.update(key('t')),
            None,
            "no terminal-server keys: t is unused"
        );
        assert_eq!(
            demo.update(key('K')),
            Some(Effect::Extra {
                key: 'K',
                target: "app1".into()
            })
        );
        assert_eq!(
            demo.update(key('R')),
            Some(Effect::Extra {
                key: 'R',
                target: "app1".into()
            })
        );
    }

    #[test]
    fn t_moves_among_terminal_servers_dead_ones_included_and_their_keys_act_on_it() {
        let extras = Extras {
            name: "demo".into(),
            banner: String::new(),
            keys: vec![ExtraKey {
                key: 'T',
                verb: "kill".into(),
                help: "kill the selected terminal server".into(),
                target: Target::TerminalServer,
            }],
            terminal_servers: vec!["ts1".into(), "ts2".into(), "ts3".into(), "ts4".into()],
        };
        let mut app = App::new("unix:/tmp/ts1.sock").with_extras(extras);
        app.set_now(fixtures::NOW);
        assert_eq!(
            app.update(key('T')),
            None,
            "nothing selected before any status"
        );
        assert!(
            app.notice()
                .unwrap()
                .text
                .contains("select a terminal server")
        );
        // ts3 is not live (not in the status): it stays listed, after the live ones
        // the program does not know of.
        let mut st = fixtures::cluster_follower_without_etcd();
        if let Some(c) = &mut st.cluster {
            c.servers.push(dnsd_api::TerminalServer {
                name: "ts0".into(),
                contact: None,
                leader: false,
            });
        }
        app.update(Input::Status(Box::new(st)));
        assert_eq!(app.terminal_servers(), ["ts1", "ts2", "ts3", "ts4", "ts0"]);
        assert_eq!(
            app.selected_terminal_server(),
            Some("ts1"),
            "the leader first"
        );
        app.update(key('t'));
        app.update(key('t'));
        assert_eq!(app.selected_terminal_server(), Some("ts3"));
        assert_eq!(
            app.update(key('T')),
            Some(Effect::Extra {
                key: 'T',
                target: "ts3".into()
            })
        );
        for _ in 0..3 {
            app.update(key('t'));
        }
        assert_eq!(app.selected_terminal_server(), Some("ts1"), "wraps around");
        assert_eq!(
            app.selected_node(),
            Some("app1"),
            "members keep their selection"
        );
    }

    #[test]
    fn a_not_leader_refusal_says_where_the_leader_takes_actions() {
        let mut app = app_with(fixtures::cluster_follower_without_etcd());
        app.update(Input::ActionDone {
            request: Request::Failover { service: None },
            outcome: Ok(ActionReply::refused(
                RefusalKind::NotLeader,
                "ts2 does not decide: ts1 leads; send the action there (http://127.0.0.1:8053)"
                    .into(),
            )),
        });
        let Overlay::Reply { message, .. } = app.overlay() else {
            panic!("{:?}", app.overlay());
        };
        assert!(
            message.ends_with("console --url http://127.0.0.1:8053 --token-file FILE"),
            "{message}"
        );
    }

    #[test]
    fn events_are_deduplicated_and_scrolling_back_holds_the_view() {
        let mut app = app_with(fixtures::three_members());
        let events = fixtures::events();
        for e in &events {
            app.update(Input::Event(Box::new(e.clone())));
        }
        app.update(Input::Event(Box::new(events[2].clone())));
        assert_eq!(app.visible_events().len(), events.len());
        app.update(code(KeyCode::Tab));
        app.update(code(KeyCode::Up));
        app.update(code(KeyCode::Up));
        assert_eq!(app.event_scroll, 2);
        let mut next = events[5].clone();
        next.seq = 7;
        app.update(Input::Event(Box::new(next)));
        assert_eq!(app.event_scroll, 3);
        app.update(code(KeyCode::End));
        assert_eq!(app.event_scroll, 0);
    }

    #[test]
    fn unmapped_keys_do_not_redraw() {
        let mut app = app_with(fixtures::three_members());
        app.take_dirty();
        app.update(key('z'));
        assert!(!app.take_dirty());
        app.update(key('j'));
        assert!(app.take_dirty());
    }
}
