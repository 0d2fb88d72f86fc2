//! The zone as DNS sees it: an immutable view built from the configuration and the
//! controller's current primaries, and the pure function that answers a question from
//! it. The daemon publishes a new one on every role change; queries only read.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::config::SoaTimers;

/// Why a snapshot could not be built (only a name that does not parse, which
/// configuration validation already rules out).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the zone: {name:?} is not a valid DNS name: {error}")]
pub struct ZoneError {
    name: String,
    error: hickory_proto::ProtoError,
}

/// Everything needed to build a snapshot. Names are fully qualified, lower case.
#[derive(Debug, Clone)]
pub struct ZoneSpec<'a> {
    pub origin: &'a str,
    pub serial: u32,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub hostmaster: &'a str,
    /// Refresh, retry and expire, for secondaries.
    pub soa: SoaTimers,
    /// Name servers: name and address.
    pub nameservers: Vec<(&'a str, IpAddr)>,
    /// Labels under the origin and the address each answers with: one per member
    /// (`<node>`) and one per service (`<service>`, the current primary).
    pub hosts: Vec<(&'a str, IpAddr)>,
}

/// The records of one owner name.
#[derive(Debug, Default, Clone, PartialEq)]
struct Owner {
    a: Vec<Record>,
    aaaa: Vec<Record>,
}

/// An immutable view of the zone at one serial.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    origin: LowerName,
    serial: u32,
    soa: [Record; 1],
    ns: Vec<Record>,
    glue: Vec<Record>,
    owners: HashMap<LowerName, Owner>,
    /// Names that exist only because something lies below them (e.g. `dns.<zone>` for
    /// a name server `ns1.dns.<zone>`): NODATA, not NXDOMAIN.
    empty_non_terminals: HashSet<LowerName>,
}

/// The answer to one question, borrowing the snapshot's records.
#[derive(Debug, PartialEq)]
pub struct Answer<'z> {
    pub rcode: ResponseCode,
    /// True for every answer from inside the zone (the AA flag).
    pub authoritative: bool,
    pub answers: Vec<&'z Record>,
    pub authority: &'z [Record],
    pub additional: &'z [Record],
}

impl<'z> Answer<'z> {
    fn refused() -> Self {
        Answer {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: &[],
            additional: &[],
        }
    }
}

fn name(s: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(s).map_err(|error| ZoneError {
        name: s.to_owned(),
        error,
    })
}

fn address_record(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, data)
}

/// A SOA timer as the record holds it; validation keeps timers below 2^31.
fn timer(secs: u32) -> i32 {
    i32::try_from(secs).unwrap_or(i32::MAX)
}

impl Zone {
    /// Builds a snapshot. Called on every role change, never on the query path.
    pub fn build(spec: &ZoneSpec<'_>) -> Result<Zone, ZoneError> {
        let origin = name(spec.origin)?;
        let mname = match spec.nameservers.first() {
            Some((ns, _)) => name(ns)?,
            None => origin.clone(),
        };
        // The SOA's own TTL is at least the negative TTL: resolvers cache a negative
        // answer for the smaller of the SOA's TTL and its minimum (RFC 2308 section 5),
        // so a SOA TTL below `negative_ttl` would silently shorten it.
        let soa = Record::from_rdata(
            origin.clone(),
            spec.ttl.max(spec.negative_ttl),
            RData::SOA(SOA::new(
                mname,
                name(spec.hostmaster)?,
                spec.serial,
                timer(spec.soa.refresh),
                timer(spec.soa.retry),
                timer(spec.soa.expire),
                spec.negative_ttl,
            )),
        );

        let mut ns = Vec::new();
        let mut glue = Vec::new();
        let mut owners: HashMap<LowerName, Owner> = HashMap::new();
        let add = |owner: &Name, ip: IpAddr, owners: &mut HashMap<LowerName, Owner>| {
            let rec = address_record(owner.clone(), spec.ttl, ip);
            let entry = owners.entry(LowerName::new(owner)).or_default();
            match ip {
                IpAddr::V4(_) => entry.a.push(rec.clone()),
                IpAddr::V6(_) => entry.aaaa.push(rec.clone()),
            }
            rec
        };
        let lower_origin = LowerName::new(&origin);
        let mut empty_non_terminals = HashSet::new();
        for (ns_name, ip) in &spec.nameservers {
            let n = name(ns_name)?;
            ns.push(Record::from_rdata(
                origin.clone(),
                spec.ttl,
                RData::NS(NS(n.clone())),
            ));
            let lower = LowerName::new(&n);
            if lower_origin.zone_of(&lower) {
                glue.push(add(&n, *ip, &mut owners));
                let mut parent = lower.base_name();
                while parent != lower_origin && lower_origin.zone_of(&parent) {
                    empty_non_terminals.insert(parent.clone());
                    parent = parent.base_name();
                }
            }
        }
        for (label, ip) in &spec.hosts {
            let owner = name(&format!("{label}.{}", spec.origin))?;
            add(&owner, *ip, &mut owners);
        }
        empty_non_terminals.retain(|n| !owners.contains_key(n));

        Ok(Zone {
            origin: lower_origin,
            serial: spec.serial,
            soa: [soa],
            ns,
            glue,
            owners,
            empty_non_terminals,
        })
    }

    /// The SOA record (what transfers begin and end with).
    pub fn soa(&self) -> &Record {
        &self.soa[0]
    }

    /// Every record but the SOA, in a stable order: the NS records, then each owner's
    /// A and AAAA records by owner name. With the SOA before and after, this is an AXFR.
    pub fn records(&self) -> Vec<&Record> {
        let mut owners: Vec<(&LowerName, &Owner)> = self.owners.iter().collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        self.ns
            .iter()
            .chain(
                owners
                    .into_iter()
                    .flat_map(|(_, o)| o.a.iter().chain(&o.aaaa)),
            )
            .collect()
    }

    /// Every name below the origin that exists (owners and empty non-terminals).
    pub fn names(&self) -> impl Iterator<Item = Name> + '_ {
        self.owners
            .keys()
            .chain(&self.empty_non_terminals)
            .map(|n| Name::from(n.clone()))
    }

    /// The serial this snapshot was built at.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The zone's origin.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// Answers one question. `qname` is compared without regard to case.
    pub fn answer(&self, qname: &LowerName, qtype: RecordType, qclass: DNSClass) -> Answer<'_> {
        // Only class IN is served: CH (`version.bind`), HS and the meta-class ANY are
        // REFUSED like names outside the zone.
        if !self.origin.zone_of(qname) || qclass != DNSClass::IN {
            return Answer::refused();
        }
        let mut answer = Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authority: &[],
            additional: &[],
        };
        if *qname == self.origin {
            match qtype {
                RecordType::SOA => answer.answers.push(&self.soa[0]),
                RecordType::NS => {
                    answer.answers.extend(&self.ns);
                    answer.additional = &self.glue;
                }
                // RFC 8482 section 4.1: ANY is answered with one RRset, the SOA (the
                // smallest), not with everything the apex holds.
                RecordType::ANY => answer.answers.push(&self.soa[0]),
                _ => answer.authority = &self.soa,
            }
            return answer;
        }
        match self.owners.get(qname) {
            Some(owner) => {
                match qtype {
                    RecordType::A => answer.answers.extend(&owner.a),
                    RecordType::AAAA => answer.answers.extend(&owner.aaaa),
                    RecordType::ANY => {
                        answer.answers.extend(&owner.a);
                        answer.answers.extend(&owner.aaaa);
                    }
                    _ => {}
                }
                if answer.answers.is_empty() {
                    answer.authority = &self.soa;
                }
            }
            None if self.empty_non_terminals.contains(qname) => answer.authority = &self.soa,
            None => {
                answer.rcode = ResponseCode::NXDomain;
                answer.authority = &self.soa;
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn zone() -> Zone {
        Zone::build(&ZoneSpec {
            origin: "svc.test.",
            serial: 7,
            ttl: 5,
            negative_ttl: 3,
            hostmaster: "hostmaster.svc.test.",
            soa: SoaTimers {
                refresh: 3600,
                retry: 600,
                expire: 86400,
            },
            nameservers: vec![
                ("ns1.svc.test.", "127.0.0.1".parse().unwrap()),
                ("ns2.dns.svc.test.", "::1".parse().unwrap()),
                ("ns.elsewhere.example.", "192.0.2.1".parse().unwrap()),
            ],
            hosts: vec![
                ("app1", "10.0.0.11".parse().unwrap()),
                ("app2", "fd00::12".parse().unwrap()),
                ("www", "10.0.0.11".parse().unwrap()),
            ],
        })
        .unwrap()
    }

    fn ask(z: &Zone, q: &str, t: RecordType) -> (ResponseCode, Vec<String>, usize, usize) {
        let a = z.answer(&LowerName::from_str(q).unwrap(), t, DNSClass::IN);
        (
            a.rcode,
            a.answers.iter().map(|r| r.data.to_string()).collect(),
            a.authority.len(),
            a.additional.len(),
        )
    }

    #[test]
    fn service_and_member_names_answer_their_address() {
        let z = zone();
        assert_eq!(
            ask(&z, "www.svc.test.", RecordType::A),
            (ResponseCode::NoError, vec!["10.0.0.11".into()], 0, 0)
        );
        assert_eq!(
            ask(&z, "APP2.Svc.Test.", RecordType::AAAA),
            (ResponseCode::NoError, vec!["fd00::12".into()], 0, 0)
        );
    }

    #[test]
    fn nodata_and_nxdomain_carry_the_soa() {
        let z = zone();
        assert_eq!(
            ask(&z, "app2.svc.test.", RecordType::A),
            (ResponseCode::NoError, vec![], 1, 0)
        );
        assert_eq!(
            ask(&z, "www.svc.test.", RecordType::MX),
            (ResponseCode::NoError, vec![], 1, 0)
        );
        assert_eq!(
            ask(&z, "nope.svc.test.", RecordType::A),
            (ResponseCode::NXDomain, vec![], 1, 0)
        );
        assert_eq!(
            ask(&z, "x.www.svc.test.", RecordType::A),
            (ResponseCode::NXDomain, vec![], 1, 0)
        );
        // `dns.svc.test.` exists because ns2 lies below it.
        assert_eq!(
            ask(&z, "dns.svc.test.", RecordType::A),
            (ResponseCode::NoError, vec![], 1, 0)
        );
        assert!(
            z.answer(
                &LowerName::from_str("nope.svc.test.").unwrap(),
                RecordType::A,
                DNSClass::IN
            )
            .authoritative
        );
    }

    #[test]
    fn apex_has_soa_and_ns_with_in_zone_glue_only() {
        let z = zone();
        let (rc, soa, _, _) = ask(&z, "svc.test.", RecordType::SOA);
        assert_eq!(rc, ResponseCode::NoError);
        assert_eq!(soa.len(), 1);
        assert!(soa[0].contains(" 7 "), "serial in {soa:?}");
        let (_, ns, _, glue) = ask(&z, "svc.test.", RecordType::NS);
        assert_eq!(ns.len(), 3);
        assert_eq!(glue, 2, "glue only for the two in-zone name servers");
        assert_eq!(
            ask(&z, "ns1.svc.test.", RecordType::A).1,
            vec!["127.0.0.1".to_owned()]
        );
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        let z = zone();
        let a = z.answer(
            &LowerName::from_str("example.com.").unwrap(),
            RecordType::A,
            DNSClass::IN,
        );
        assert_eq!(a.rcode, ResponseCode::Refused);
        assert!(!a.authoritative);
        let a = z.answer(
            &LowerName::from_str("test.").unwrap(),
            RecordType::SOA,
            DNSClass::IN,
        );
        assert_eq!(a.rcode, ResponseCode::Refused, "the parent is not ours");
        let a = z.answer(
            &LowerName::from_str("www.svc.test.").unwrap(),
            RecordType::A,
            DNSClass::CH,
        );
        assert_eq!(a.rcode, ResponseCode::Refused, "only class IN is served");
    }

    #[test]
    fn negative_ttl_is_the_soa_minimum() {
        let z = zone();
        let a = z.answer(
            &LowerName::from_str("nope.svc.test.").unwrap(),
            RecordType::A,
            DNSClass::IN,
        );
        match &a.authority[0].data {
            RData::SOA(soa) => assert_eq!(soa.minimum, 3),
            other => panic!("not a SOA: {other:?}"),
        }
    }

    #[test]
    fn classes_other_than_in_are_refused() {
        let z = zone();
        for class in [DNSClass::CH, DNSClass::HS, DNSClass::ANY, DNSClass::NONE] {
            let a = z.answer(
                &LowerName::from_str("www.svc.test.").unwrap(),
                RecordType::A,
                class,
            );
            assert_eq!(a.rcode, ResponseCode::Refused, "{class:?}");
            assert!(!a.authoritative);
        }
        // version.bind in class CH is not ours either: dnsd does not tell its version.
        let a = z.answer(
            &LowerName::from_str("version.bind.").unwrap(),
            RecordType::TXT,
            DNSClass::CH,
        );
        assert_eq!(a.rcode, ResponseCode::Refused);
    }

    #[test]
    fn any_at_the_apex_is_the_soa_alone() {
        let z = zone();
        let (rc, answers, authority, additional) = ask(&z, "svc.test.", RecordType::ANY);
        assert_eq!(
            (rc, answers.len(), authority, additional),
            (ResponseCode::NoError, 1, 0, 0)
        );
        assert!(answers[0].contains(" 7 "), "the SOA: {answers:?}");
        // A member's ANY holds its addresses (two small RRsets at most).
        assert_eq!(
            ask(&z, "app1.svc.test.", RecordType::ANY).1,
            vec!["10.0.0.11"]
        );
    }

    #[test]
    fn soa_ttl_is_never_below_the_negative_ttl() {
        let spec = |ttl, negative_ttl| ZoneSpec {
            origin: "svc.test.",
            serial: 1,
            ttl,
            negative_ttl,
            hostmaster: "hostmaster.svc.test.",
            soa: SoaTimers {
                refresh: 14400,
                retry: 3600,
                expire: 1_209_600,
            },
            nameservers: vec![("ns1.svc.test.", "127.0.0.1".parse().unwrap())],
            hosts: vec![],
        };
        let z = Zone::build(&spec(5, 60)).unwrap();
        assert_eq!(
            z.soa().ttl,
            60,
            "resolvers cache NXDOMAIN min(SOA TTL, minimum)"
        );
        let RData::SOA(soa) = &z.soa().data else {
            panic!("not a SOA")
        };
        assert_eq!(
            (soa.refresh, soa.retry, soa.expire, soa.minimum),
            (14400, 3600, 1_209_600, 60)
        );
        assert_eq!(Zone::build(&spec(30, 5)).unwrap().soa().ttl, 30);
    }

    #[test]
    fn records_are_listed_once_in_a_stable_order() {
        let z = zone();
        let listed: Vec<String> = z.records().iter().map(|r| r.to_string()).collect();
        assert_eq!(
            listed.len(),
            3 + 2 + 3,
            "3 NS, 2 glue, 3 hosts: {listed:#?}"
        );
        assert!(
            z.records()[..3]
                .iter()
                .all(|r| r.record_type() == RecordType::NS),
            "{listed:#?}"
        );
        let again: Vec<String> = zone().records().iter().map(|r| r.to_string()).collect();
        assert_eq!(listed, again);
    }
}
