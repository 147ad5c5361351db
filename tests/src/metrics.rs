//! Reading a process's `/metrics` (Prometheus text) the way an operator's query would.

/// The value of the first sample named as `series`: a metric name, or a name and labels such as
/// `weir_executor_tasks_total{outcome="succeeded"}`, which must appear in the sample's label set
/// as written (labels not named, such as `job`, are not compared).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, Some(labels.trim_end_matches('}'))),
        None => (series, None),
    };
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let (line_name, rest) = line.split_at(line.find(['{', ' ']).unwrap_or(line.len()));
            line_name == name && labels.is_none_or(|labels| rest.contains(labels))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn samples_are_found_by_name_and_the_labels_asked_for() {
        let text = "# TYPE t counter\nt_total{job=\"j\",outcome=\"failed\"} 2\nt_total{job=\"j\",outcome=\"succeeded\"} 5\nup 1\n";
        assert_eq!(sample(text, "t_total{outcome=\"succeeded\"}"), Some(5.0));
        assert_eq!(sample(text, "t_total"), Some(2.0));
        assert_eq!(sample(text, "up"), Some(1.0));
        assert_eq!(sample(text, "t"), None, "a name is matched whole");
    }
}
