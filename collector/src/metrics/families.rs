//! Metric families in a fixed order, filled sample by sample and encoded in the Prometheus
//! text format by the `prometheus` crate (which escapes label values and writes HELP/TYPE).

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One metric family: name, help text, type.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// One sample of a family.
#[derive(Debug, Clone)]
pub struct Sample {
    pub def: &'static Def,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Encodes samples, grouped by family in the order of `defs`; families without samples are
/// left out. Samples of a family not in `defs` are ignored.
pub fn encode<'a>(defs: &[&'static Def], samples: impl Iterator<Item = &'a Sample>) -> String {
    let mut families: Vec<MetricFamily> = defs
        .iter()
        .map(|d| {
            let mut f = MetricFamily::default();
            f.set_name(d.name.to_string());
            f.set_help(d.help.to_string());
            f.set_field_type(match d.kind {
                Kind::Gauge => MetricType::GAUGE,
                Kind::Counter => MetricType::COUNTER,
            });
            f
        })
        .collect();
    for s in samples {
        let Some(i) = defs.iter().position(|d| std::ptr::eq(*d, s.def)) else {
            continue;
        };
        let mut m = Metric::default();
        m.set_label(
            s.labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name(k.to_string());
                    l.set_value(v.clone());
                    l
                })
                .collect(),
        );
        match s.def.kind {
            Kind::Gauge => {
                let mut g = Gauge::default();
                g.set_value(s.value);
                m.set_gauge(g);
            }
            Kind::Counter => {
                let mut c = Counter::default();
                c.set_value(s.value);
                m.set_counter(c);
            }
        }
        families[i].mut_metric().push(m);
    }
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    // Only fails on a family without metrics or name, which `retain` and `defs` rule out.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        return format!("# leakscope: cannot encode metrics: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: Def = Def { name: "t_bytes", help: "Bytes.", kind: Kind::Gauge };
    static B: Def = Def { name: "t_total", help: "Count.", kind: Kind::Counter };
    static UNUSED: Def = Def { name: "t_unused", help: "Nothing.", kind: Kind::Gauge };

    #[test]
    fn families_are_grouped_typed_and_label_values_escaped() {
        let samples = [
            Sample { def: &B, labels: vec![("pid", "1".into())], value: 3.0 },
            Sample { def: &A, labels: vec![("type", "Dictionary<String, \"x\\y\">\n".into())], value: 1.5e6 },
            Sample { def: &A, labels: vec![("type", "T".into())], value: 2.0 },
        ];
        let text = encode(&[&A, &B, &UNUSED], samples.iter());
        let expected = "# HELP t_bytes Bytes.\n# TYPE t_bytes gauge\n\
             t_bytes{type=\"Dictionary<String, \\\"x\\\\y\\\">\\n\"} 1500000\n\
             t_bytes{type=\"T\"} 2\n\
             # HELP t_total Count.\n# TYPE t_total counter\nt_total{pid=\"1\"} 3\n";
        assert_eq!(text, expected);
    }
}
