//! What an operator action will do, in words, from the last known status: the text of
//! the confirmation that both the TUI's dialog and the scriptable commands' `[y/N]`
//! prompt show before anything is sent.
//!
//! The daemon remains the judge: a plan only predicts, and says so when the status
//! already shows that the daemon will refuse (its refusal reason is shown afterwards).

use dnsd_api::{Action, Health, ServiceStatus, Status};

/// The confirmation text for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The question: "Promote app2 to primary of www?".
    pub question: String,
    /// What happens, step by step, when the operator says yes.
    pub steps: String,
    /// Why the daemon will probably refuse, when the status shows it already.
    pub warning: Option<String>,
}

/// Whether an action changes which member is primary (and so must be confirmed even by
/// scripts, with `--yes`).
pub fn moves_primary(action: &Action) -> bool {
    matches!(
        action,
        Action::Failover { .. } | Action::Failback { .. } | Action::Promote { .. }
    )
}

/// Whether the TUI asks before sending: everything that moves a primary or changes what
/// the daemon may decide (maintenance, pause, resume). A sync is sent at once.
pub fn needs_confirmation(action: &Action) -> bool {
    !matches!(action, Action::Sync { .. })
}

/// The service an action concerns: the one it names, or the only one there is.
fn service<'a>(status: Option<&'a Status>, name: Option<&str>) -> Option<&'a ServiceStatus> {
    let status = status?;
    match name {
        Some(n) => status.service(n),
        None if status.services.len() == 1 => status.services.first(),
        None => None,
    }
}

fn is_up(status: Option<&Status>, node: &str) -> bool {
    status
        .and_then(|s| s.node(node))
        .is_some_and(|n| n.health == Health::Up)
}

/// How the primary of `svc` would move to `target`, in words, step by step as dnsd will
/// take them for this service's hooks.
fn movement(status: Option<&Status>, svc: &ServiceStatus, target: &str) -> String {
    let old = &svc.primary;
    let hooks = &svc.hooks;
    let epoch = svc.epoch + 1;
    let dns = format!("DNS answers {} with {target} (epoch {epoch})", svc.fqdn);
    let promote = if hooks.promote {
        format!("{target}'s promote hook runs")
    } else {
        format!("{target} is promoted")
    };
    if is_up(status, old) {
        let demote = if hooks.demote {
            format!("{old}'s demote hook stops its writes")
        } else {
            format!("{old} is not demoted (no demote hook: its writes are not stopped)")
        };
        let sync = if svc.paths.is_empty() {
            String::new()
        } else {
            format!(", a final sync copies its latest data to {target}")
        };
        let rollback = if hooks.promote {
            format!(" If a step fails, {old}'s promote hook runs again and it stays primary.")
        } else {
            format!(" If a step fails, {old} stays primary.")
        };
        format!("Planned switchover: {demote}{sync}, {promote}, then {dns}.{rollback}")
    } else {
        let fence = match (hooks.fence, hooks.fencing_required) {
            (false, _) => String::new(),
            (true, true) => {
                format!("{old} is fenced first (required: no promotion if the fence fails), ")
            }
            (true, false) => format!("{old} is fenced first (best effort), "),
        };
        format!("Failover: {old} is down, so {fence}{promote} and {dns} at once.")
    }
}

/// Why `svc` would refuse to promote `target`, as the status tells it.
fn refusal(svc: &ServiceStatus, target: &str) -> Option<String> {
    if let Some(t) = &svc.transition {
        return Some(format!("{} is busy ({t}): dnsd will refuse", svc.name));
    }
    let member = svc.member(target)?;
    if member.eligible {
        return None;
    }
    let why = member
        .skip_reason
        .clone()
        .unwrap_or_else(|| "is not eligible".to_owned());
    Some(format!("{target} {why}: dnsd will refuse"))
}

/// The confirmation text for `action`, from the last known `status` (if any).
pub fn describe(action: &Action, status: Option<&Status>) -> Plan {
    match action {
        Action::Failover { service: name } => {
            let svc = service(status, name.as_deref());
            let label = svc.map_or_else(|| name.clone().unwrap_or_default(), |s| s.name.clone());
            let question = format!("Fail over {label} now?");
            match svc {
                Some(svc) => match &svc.next {
                    Some(next) => Plan {
                        question,
                        steps: format!(
                            "{next} is the next eligible member after {} in round-robin order. {}",
                            svc.primary,
                            movement(status, svc, next)
                        ),
                        warning: refusal(svc, next),
                    },
                    None => Plan {
                        question,
                        steps: "The next eligible member in round-robin order would be promoted."
                            .to_owned(),
                        warning: Some(format!(
                            "no member of {} can take over now: dnsd will refuse",
                            svc.name
                        )),
                    },
                },
                None => unknown(question),
            }
        }
        Action::Failback { service: name } => {
            let svc = service(status, name.as_deref());
            match svc {
                Some(svc) => {
                    let pref = &svc.preferred;
                    let question =
                        format!("Give {} back to its preferred member {pref}?", svc.name);
                    if &svc.primary == pref {
                        return Plan {
                            question,
                            steps: String::new(),
                            warning: Some(format!(
                                "{pref} is already the primary: dnsd will refuse"
                            )),
                        };
                    }
                    Plan {
                        question,
                        steps: movement(status, svc, pref),
                        warning: refusal(svc, pref),
                    }
                }
                None => unknown(format!(
                    "Fail back {}?",
                    name.as_deref().unwrap_or("the service")
                )),
            }
        }
        Action::Promote {
            service: name,
            node,
        } => {
            let svc = service(status, name.as_deref());
            match svc {
                Some(svc) => {
                    let question = format!("Promote {node} to primary of {}?", svc.name);
                    if &svc.primary == node {
                        return Plan {
                            question,
                            steps: String::new(),
                            warning: Some(format!("{node} is already the primary: dnsd will refuse")),
                        };
                    }
                    if svc.member(node).is_none() {
                        return Plan {
                            question,
                            steps: String::new(),
                            warning: Some(format!(
                                "{node} is not a member of {}: dnsd will refuse",
                                svc.name
                            )),
                        };
                    }
                    Plan {
                        question,
                        steps: movement(status, svc, node),
                        warning: refusal(svc, node),
                    }
                }
                None => unknown(format!("Promote {node} to primary?")),
            }
        }
        Action::Sync {
            service: name,
            node,
        } => {
            let svc = service(status, name.as_deref());
            let (label, from) = svc.map_or_else(
                || (name.clone().unwrap_or_default(), "the primary".to_owned()),
                |s| (s.name.clone(), s.primary.clone()),
            );
            let to = node
                .clone()
                .unwrap_or_else(|| "every secondary that is up".to_owned());
            Plan {
                question: format!("Sync {label} now?"),
                steps: format!(
                    "A mirroring pass copies {from}'s data to {to} now, without waiting for the next interval."
                ),
                warning: svc
                    .filter(|s| s.paths.is_empty())
                    .map(|s| format!("{} has no paths to mirror: dnsd will refuse", s.name)),
            }
        }
        Action::Maintenance { node, on: true } => {
            let primary_of = status.and_then(|st| st.services.iter().find(|s| &s.primary == node));
            Plan {
                question: format!("Put {node} in maintenance?"),
                steps: format!(
                    "dnsd will never promote {node} until maintenance is off; its heartbeat and mirroring go on, and DNS does not change."
                ),
                warning: primary_of.map(|s| {
                    format!(
                        "{node} is the primary of {}: dnsd will refuse; move the primary first",
                        s.name
                    )
                }),
            }
        }
        Action::Maintenance { node, on: false } => Plan {
            question: format!("Take {node} out of maintenance?"),
            steps: format!(
                "{node} may be promoted again as soon as it is eligible (up and in sync)."
            ),
            warning: None,
        },
        Action::Pause { service: name } => Plan {
            question: format!("Pause automatic decisions for {}?", scope(name)),
            steps: "No automatic failover or failback until resumed; heartbeats, mirroring and operator actions go on. DNS keeps answering the current primary, even if it goes down.".to_owned(),
            warning: None,
        },
        Action::Resume { service: name } => {
            let down: Vec<String> = status
                .map(|st| {
                    st.services
                        .iter()
                        .filter(|s| name.as_ref().is_none_or(|n| &s.name == n))
                        .filter_map(|s| {
                            if !is_up(status, &s.primary) {
                                Some(format!("{}'s primary {} is down", s.name, s.primary))
                            } else if check_fails(s, &s.primary) {
                                Some(format!(
                                    "{}'s primary {} fails its service check",
                                    s.name, s.primary
                                ))
                            } else {
                                None
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            Plan {
                question: format!("Resume automatic decisions for {}?", scope(name)),
                steps: "dnsd decides again on its own: a primary that is down is failed over, one whose service check fails is restarted first (when the service has a restart hook), and failback follows the service's policy.".to_owned(),
                warning: (!down.is_empty()).then(|| {
                    format!("{}: a restart or failover will follow at once", down.join("; "))
                }),
            }
        }
        Action::Unquarantine {
            service: name,
            node,
        } => {
            let now = status.map_or(0, |st| st.now_ms);
            let quarantined: Vec<&ServiceStatus> = status
                .map(|st| {
                    st.services
                        .iter()
                        .filter(|s| name.as_ref().is_none_or(|n| &s.name == n))
                        .filter(|s| {
                            s.member(node)
                                .and_then(|m| m.quarantined_until_ms)
                                .is_some_and(|until| until > now)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let r#where = if quarantined.is_empty() {
                name.as_ref().map(|n| format!(" in {n}")).unwrap_or_default()
            } else {
                let names: Vec<&str> = quarantined.iter().map(|s| s.name.as_str()).collect();
                format!(" in {}", names.join(", "))
            };
            Plan {
                question: format!("Lift the quarantine of {node}{where}?"),
                steps: format!(
                    "{node} was quarantined for flapping. Lifted, it may be promoted and failed back to again as soon as it is eligible (a stranded service promotes it at once); its changes of health count afresh. DNS does not change now."
                ),
                warning: (status.is_some() && quarantined.is_empty())
                    .then(|| format!("{node} is not quarantined{where}: dnsd will refuse")),
            }
        }
    }
}

/// Whether the service's check fails on `node` (its host may be up).
fn check_fails(svc: &ServiceStatus, node: &str) -> bool {
    svc.member(node)
        .and_then(|m| m.check.as_ref())
        .is_some_and(|c| c.health == Health::Down)
}

fn scope(service: &Option<String>) -> String {
    match service {
        Some(s) => s.clone(),
        None => "every service".to_owned(),
    }
}

fn unknown(question: String) -> Plan {
    Plan {
        question,
        steps: "dnsd's status is not known here, so what happens is up to dnsd's rules.".to_owned(),
        warning: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_promotion_from_a_live_primary_is_a_planned_switchover() {
        let st = fixtures::three_members();
        let plan = describe(
            &Action::Promote {
                service: Some("www".into()),
                node: "app2".into(),
            },
            Some(&st),
        );
        assert_eq!(plan.question, "Promote app2 to primary of www?");
        assert!(
            plan.steps
                .starts_with("Planned switchover: app1's demote hook stops its writes"),
            "{}",
            plan.steps
        );
        assert!(
            plan.steps.contains("app2's promote hook runs"),
            "{}",
            plan.steps
        );
        assert!(
            plan.steps
                .contains("a final sync copies its latest data to app2")
        );
        assert!(plan.steps.contains("(epoch 4)"), "{}", plan.steps);
        assert_eq!(plan.warning, None);
    }

    #[test]
    fn the_plan_follows_the_services_hooks() {
        let mut st = fixtures::three_members();
        st.services[0].hooks = dnsd_api::HookSettings::default();
        let promote = Action::Promote {
            service: Some("www".into()),
            node: "app2".into(),
        };
        let plan = describe(&promote, Some(&st));
        assert!(
            plan.steps.starts_with(
                "Planned switchover: app1 is not demoted (no demote hook: its writes are not stopped)"
            ),
            "{}",
            plan.steps
        );
        assert!(
            plan.steps.ends_with("If a step fails, app1 stays primary."),
            "{}",
            plan.steps
        );
        // With the primary down, a fence first when one is configured.
        let mut down = fixtures::failed_over();
        down.services[0].hooks.fence = true;
        down.services[0].hooks.fencing_required = true;
        down.nodes
            .iter_mut()
            .filter(|n| n.name == down.services[0].primary)
            .for_each(|n| n.health = Health::Down);
        let f = describe(&Action::Failover { service: None }, Some(&down));
        assert!(
            f.steps
                .contains("is fenced first (required: no promotion if the fence fails)"),
            "{}",
            f.steps
        );
    }

    #[test]
    fn promoting_a_down_member_warns_with_the_daemons_reason() {
        let st = fixtures::member_down();
        let plan = describe(
            &Action::Promote {
                service: Some("www".into()),
                node: "app3".into(),
            },
            Some(&st),
        );
        assert_eq!(
            plan.warning.as_deref(),
            Some("app3 is down: dnsd will refuse")
        );
    }

    #[test]
    fn failover_names_the_next_member_and_failback_the_preferred() {
        let st = fixtures::failed_over();
        let f = describe(&Action::Failover { service: None }, Some(&st));
        assert!(
            f.steps
                .starts_with("app3 is the next eligible member after app2"),
            "{}",
            f.steps
        );
        let b = describe(&Action::Failback { service: None }, Some(&st));
        assert_eq!(b.question, "Give www back to its preferred member app1?");
        assert!(
            b.steps.contains("app2's demote hook stops its writes"),
            "{}",
            b.steps
        );
        assert_eq!(
            b.warning.as_deref(),
            Some("app1 is down: dnsd will refuse"),
            "the preferred member is down in this fixture"
        );
    }

    #[test]
    fn maintenance_of_a_primary_is_predicted_to_be_refused() {
        let st = fixtures::three_members();
        let plan = describe(
            &Action::Maintenance {
                node: "app1".into(),
                on: true,
            },
            Some(&st),
        );
        assert!(plan.warning.unwrap().contains("is the primary of www"));
        assert!(moves_primary(&Action::Failback { service: None }));
        assert!(!moves_primary(&Action::Pause { service: None }));
        assert!(!needs_confirmation(&Action::Sync {
            service: None,
            node: None
        }));
    }

    #[test]
    fn lifting_a_quarantine_says_what_follows_and_predicts_a_refusal() {
        let st = fixtures::service_checks();
        let lift = |node: &str| Action::Unquarantine {
            service: None,
            node: node.into(),
        };
        let plan = describe(&lift("app3"), Some(&st));
        assert_eq!(plan.question, "Lift the quarantine of app3 in www?");
        assert!(plan.steps.starts_with("app3 was quarantined for flapping."));
        assert_eq!(plan.warning, None);
        assert!(needs_confirmation(&lift("app3")));
        assert!(!moves_primary(&lift("app3")));
        let plan = describe(&lift("app2"), Some(&st));
        assert_eq!(
            plan.warning.as_deref(),
            Some("app2 is not quarantined: dnsd will refuse")
        );
        let resume = describe(&Action::Resume { service: None }, Some(&st));
        assert_eq!(
            resume.warning.as_deref(),
            Some(
                "www's primary app1 fails its service check: a restart or failover will follow at once"
            )
        );
    }
}
