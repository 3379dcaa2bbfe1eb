//! Which processes are instrumented: include and exclude entries, and the
//! pure decision over what is known of a process (testable without /proc).

use std::fmt;

use regex::Regex;

use super::values::PortSet;

/// One selection entry (Beyla's `discovery.services[]` item). Every
/// criterion given must match; an entry with none matches nothing.
#[derive(Debug, Clone, Default)]
pub struct SelectEntry {
    /// service.name for the processes it selects (unless they set one).
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub open_ports: PortSet,
    pub exe_path: Option<Regex>,
    pub pids: Vec<u32>,
}

impl SelectEntry {
    pub fn has_criteria(&self) -> bool {
        !self.open_ports.is_empty() || self.exe_path.is_some() || !self.pids.is_empty()
    }

    pub fn matches(&self, p: &mut dyn ProcView) -> bool {
        if !self.has_criteria() {
            return false;
        }
        // Cheapest checks first: the port check may read /proc.
        (self.pids.is_empty() || self.pids.contains(&p.pid()))
            && self.exe_path.as_ref().is_none_or(|re| re.is_match(p.exe()))
            && (self.open_ports.is_empty() || p.listens_on(&self.open_ports))
    }
}

/// What the decision needs to know of a process.
pub trait ProcView {
    fn pid(&self) -> u32;
    /// Executable path ("" if unknown).
    fn exe(&self) -> &str;
    /// Whether it holds a listening TCP socket on one of `ports`.
    fn listens_on(&mut self, ports: &PortSet) -> bool;
}

/// Which processes to instrument. Include entries combine as a union; a
/// process matching any exclude entry is never instrumented. No include
/// entry means every process (but the agent, the excluded and the default
/// exclusions: observability agents and collectors, which would otherwise
/// trace their own export traffic). A process an include entry selects is
/// chosen explicitly: default exclusions do not apply to it.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include: Vec<SelectEntry>,
    pub exclude: Vec<SelectEntry>,
    pub default_exclude: Vec<SelectEntry>,
}

/// Beyla's `default_exclude_instrument` for a host: observability agents
/// and collectors, as globs over the executable path (Beyla's own list
/// plus the agents and shippers commonly found next to it, and Ratatosk).
pub const DEFAULT_EXCLUDE_GLOB: &str = "{*/beyla,*/obi,*/ebpf-instrument,*/alloy,*/grafana-agent,\
*/otelcol,*/otelcol-*,*/rotel,*/prometheus,*/prometheus-*,*/ratatosk,*/vector,*/fluent-bit,\
*/td-agent-bit,*/telegraf,*/promtail}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Selected, by this include entry (None: no include entry, everything).
    Selected(Option<usize>),
    Excluded,
    NotSelected,
}

impl Selection {
    /// Everything is traced: the kernel needs no target map at all.
    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty() && self.default_exclude.is_empty()
    }

    /// Some entry selects by listening port: the kernel must report every
    /// listen().
    pub fn has_ports(&self) -> bool {
        self.include
            .iter()
            .chain(&self.exclude)
            .chain(self.default_excluding())
            .any(|e| !e.open_ports.is_empty())
    }

    /// Exec'd programs must be traced provisionally until discovery decides:
    /// an entry selects by executable, or everything but exclusions is
    /// selected.
    pub fn needs_exec_check(&self) -> bool {
        !self.is_everything()
            && (self.include.is_empty() || self.include.iter().any(|e| e.exe_path.is_some()))
    }

    pub fn decide(&self, p: &mut dyn ProcView) -> Verdict {
        let chosen = if self.include.is_empty() {
            Some(None)
        } else {
            self.include.iter().position(|e| e.matches(p)).map(Some)
        };
        match chosen {
            None => Verdict::NotSelected,
            Some(_) if self.exclude.iter().any(|e| e.matches(p)) => Verdict::Excluded,
            Some(None) if self.default_excluding().any(|e| e.matches(p)) => Verdict::Excluded,
            Some(i) => Verdict::Selected(i),
        }
    }

    /// The default exclusions, which only apply when no include entry is
    /// given (an entry that matches selects explicitly).
    fn default_excluding(&self) -> impl Iterator<Item = &SelectEntry> {
        let active = self.include.is_empty();
        self.default_exclude.iter().filter(move |_| active)
    }

    pub fn entry(&self, i: Option<usize>) -> Option<&SelectEntry> {
        i.and_then(|i| self.include.get(i))
    }
}

impl fmt::Display for SelectEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.open_ports.is_empty() {
            parts.push(format!("open ports {}", self.open_ports));
        }
        if let Some(re) = &self.exe_path {
            parts.push(format!("executable path ~ /{re}/"));
        }
        if !self.pids.is_empty() {
            parts.push(format!("pids {:?}", self.pids));
        }
        f.write_str(&parts.join(" and "))?;
        if let Some(n) = &self.name {
            write!(f, " (as {n})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.include.is_empty() {
            f.write_str("every process except the agent")?;
            if !self.default_exclude.is_empty() {
                f.write_str(" and the default exclusions (observability agents)")?;
            }
        } else {
            let inc: Vec<String> = self.include.iter().map(|e| e.to_string()).collect();
            f.write_str(&inc.join(" or "))?;
        }
        if !self.exclude.is_empty() {
            let exc: Vec<String> = self.exclude.iter().map(|e| e.to_string()).collect();
            write!(f, ", excluding {}", exc.join(" or "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        pid: u32,
        exe: &'static str,
        ports: Vec<u16>,
        port_checks: usize,
    }

    impl ProcView for Fake {
        fn pid(&self) -> u32 {
            self.pid
        }
        fn exe(&self) -> &str {
            self.exe
        }
        fn listens_on(&mut self, ports: &PortSet) -> bool {
            self.port_checks += 1;
            self.ports.iter().any(|p| ports.contains(*p))
        }
    }

    fn proc(pid: u32, exe: &'static str, ports: &[u16]) -> Fake {
        Fake {
            pid,
            exe,
            ports: ports.to_vec(),
            port_checks: 0,
        }
    }

    fn entry(ports: &str, exe: &str, pids: &[u32]) -> SelectEntry {
        SelectEntry {
            open_ports: if ports.is_empty() {
                PortSet::default()
            } else {
                ports.parse().unwrap()
            },
            exe_path: (!exe.is_empty()).then(|| Regex::new(exe).unwrap()),
            pids: pids.to_vec(),
            ..SelectEntry::default()
        }
    }

    #[test]
    fn every_criterion_of_an_entry_must_match() {
        let sel = Selection {
            include: vec![entry("8080", "nginx", &[])],
            ..Selection::default()
        };
        assert_eq!(
            sel.decide(&mut proc(1, "/usr/sbin/nginx", &[8080])),
            Verdict::Selected(Some(0))
        );
        assert_eq!(
            sel.decide(&mut proc(1, "/usr/sbin/nginx", &[80])),
            Verdict::NotSelected
        );
        assert_eq!(
            sel.decide(&mut proc(1, "/usr/bin/python3", &[8080])),
            Verdict::NotSelected
        );
        // The executable mismatch is decided without reading ports.
        let mut p = proc(1, "/usr/bin/python3", &[8080]);
        sel.decide(&mut p);
        assert_eq!(p.port_checks, 0);
    }

    #[test]
    fn entries_combine_as_a_union_and_exclusion_wins() {
        let sel = Selection {
            include: vec![
                entry("80", "", &[]),
                entry("", "java", &[]),
                entry("", "", &[7]),
            ],
            exclude: vec![entry("", "debug", &[])],
            ..Selection::default()
        };
        assert_eq!(
            sel.decide(&mut proc(1, "/bin/x", &[80])),
            Verdict::Selected(Some(0))
        );
        assert_eq!(
            sel.decide(&mut proc(2, "/opt/java", &[])),
            Verdict::Selected(Some(1))
        );
        assert_eq!(
            sel.decide(&mut proc(7, "/bin/y", &[])),
            Verdict::Selected(Some(2))
        );
        assert_eq!(
            sel.decide(&mut proc(3, "/bin/y", &[81])),
            Verdict::NotSelected
        );
        assert_eq!(
            sel.decide(&mut proc(7, "/opt/java-debug", &[80])),
            Verdict::Excluded
        );
    }

    #[test]
    fn no_include_entry_means_everything_but_the_excluded() {
        let sel = Selection {
            include: vec![],
            exclude: vec![entry("22", "", &[])],
            ..Selection::default()
        };
        assert!(!sel.is_everything() && sel.needs_exec_check() && sel.has_ports());
        assert_eq!(
            sel.decide(&mut proc(1, "/bin/x", &[80])),
            Verdict::Selected(None)
        );
        assert_eq!(
            sel.decide(&mut proc(1, "/sbin/sshd", &[22])),
            Verdict::Excluded
        );
        assert!(Selection::default().is_everything());
    }

    #[test]
    fn an_entry_without_criteria_matches_nothing() {
        let sel = Selection {
            include: vec![SelectEntry {
                name: Some("x".into()),
                ..SelectEntry::default()
            }],
            ..Selection::default()
        };
        assert_eq!(
            sel.decide(&mut proc(1, "/bin/x", &[80])),
            Verdict::NotSelected
        );
    }

    /// Observability agents are left alone when everything is selected,
    /// but an entry that names them (by pid, port or executable) wins.
    #[test]
    fn default_exclusions_apply_only_without_an_include_entry() {
        let agents = SelectEntry {
            exe_path: Some(Regex::new(&super::super::glob_to_regex(DEFAULT_EXCLUDE_GLOB)).unwrap()),
            ..SelectEntry::default()
        };
        let mut sel = Selection {
            default_exclude: vec![agents],
            ..Selection::default()
        };
        assert!(!sel.is_everything() && sel.needs_exec_check());
        for exe in [
            "/usr/bin/otelcol-contrib",
            "/usr/local/bin/beyla",
            "/opt/alloy/alloy",
            "/usr/bin/prometheus",
            "/work/target/debug/ratatosk",
            "/usr/bin/vector",
        ] {
            assert_eq!(
                sel.decide(&mut proc(5, exe, &[])),
                Verdict::Excluded,
                "{exe}"
            );
        }
        for exe in [
            "/usr/bin/python3",
            "/usr/sbin/nginx",
            "/usr/bin/prometheusx2",
        ] {
            assert_eq!(
                sel.decide(&mut proc(5, exe, &[])),
                Verdict::Selected(None),
                "{exe}"
            );
        }
        sel.include = vec![entry("", "", &[5]), entry("9090", "", &[])];
        assert_eq!(
            sel.decide(&mut proc(5, "/usr/bin/prometheus", &[])),
            Verdict::Selected(Some(0))
        );
        assert_eq!(
            sel.decide(&mut proc(6, "/usr/bin/prometheus", &[9090])),
            Verdict::Selected(Some(1))
        );
    }
}
