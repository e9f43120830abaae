//! A rollout's plan from its request: the waves (groups first, then cumulative sizes over the
//! rest) and its failure threshold, checked before anything is stored.

use flashgate_proto::v1;

use super::record::{Threshold, Wave, WaveLabel, WaveSize};
use crate::error::{CoordinatorError as E, Result};
use crate::ids::{OrderId, Serial};

/// The failure threshold of a request: required; a percentage is at most 100.
pub fn threshold(given: Option<&v1::FailureThreshold>) -> Result<Threshold> {
    use v1::failure_threshold::Limit;
    match given.and_then(|t| t.limit) {
        None => Err(E::InvalidArgument(
            "a failure threshold is required (a percentage like 10%, or a count)".into(),
        )),
        Some(Limit::Percent(p)) if p > 100 => Err(E::InvalidArgument(format!(
            "the failure threshold {p}% is above 100%"
        ))),
        Some(Limit::Percent(p)) => Ok(Threshold::Percent(p)),
        Some(Limit::Count(c)) => Ok(Threshold::Count(c)),
    }
}

/// The wave sizes of a request: all percentages (1-100) or all counts, strictly increasing.
pub fn sizes(given: &[v1::WaveSize]) -> Result<Vec<WaveSize>> {
    use v1::wave_size::Size;
    let sizes = given
        .iter()
        .enumerate()
        .map(|(i, w)| match w.size {
            Some(Size::Percent(p)) if (1..=100).contains(&p) => Ok(WaveSize::Percent(p)),
            Some(Size::Percent(p)) => Err(E::InvalidArgument(format!(
                "wave {}: {p}% is not between 1% and 100%",
                i + 1
            ))),
            Some(Size::Count(0)) => Err(E::InvalidArgument(format!(
                "wave {}: a wave has at least 1 device",
                i + 1
            ))),
            Some(Size::Count(c)) => Ok(WaveSize::Count(c)),
            None => Err(E::InvalidArgument(format!(
                "wave {}: give a percentage or a count",
                i + 1
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let value = |s: &WaveSize| match s {
        WaveSize::Percent(v) | WaveSize::Count(v) => *v,
    };
    for (i, pair) in sizes.windows(2).enumerate() {
        if std::mem::discriminant(&pair[0]) != std::mem::discriminant(&pair[1]) {
            return Err(E::InvalidArgument(
                "waves are all percentages (10%,40%,100%) or all counts (2,5,20), not both".into(),
            ));
        }
        if value(&pair[1]) <= value(&pair[0]) {
            return Err(E::InvalidArgument(format!(
                "waves are cumulative and must increase: wave {} ({}) is not above wave {} ({})",
                i + 2,
                describe(pair[1]),
                i + 1,
                describe(pair[0])
            )));
        }
    }
    Ok(sizes)
}

/// `10%`, `5`: as the operator wrote it.
pub fn describe(size: WaveSize) -> String {
    match size {
        WaveSize::Percent(p) => format!("{p}%"),
        WaveSize::Count(c) => c.to_string(),
    }
}

/// The waves over `targets` (sorted): one per group (its members among the targets not in an
/// earlier group; none may be empty), then `sizes` over the rest, or one wave of the rest
/// when no sizes are given. Every target ends up in exactly one wave.
pub fn waves(
    targets: &[Serial],
    groups: Vec<(OrderId, Vec<Serial>)>,
    sizes: &[WaveSize],
) -> Result<Vec<Wave>> {
    let mut rest: Vec<Serial> = targets.to_vec();
    let mut waves = Vec::new();
    for (group, members) in groups {
        let serials: Vec<Serial> = rest
            .iter()
            .filter(|s| members.contains(s))
            .copied()
            .collect();
        if serials.is_empty() {
            return Err(E::InvalidArgument(format!(
                "group {group}: no targeted device (not in an earlier group) is registered under this order"
            )));
        }
        rest.retain(|s| !serials.contains(s));
        waves.push(Wave {
            label: WaveLabel::Group(group),
            serials,
        });
    }
    if sizes.is_empty() {
        if waves.is_empty() {
            return Err(E::InvalidArgument(
                "give the waves (10%,40%,100% or 2,5,20) or named groups".into(),
            ));
        }
        if !rest.is_empty() {
            waves.push(Wave {
                label: WaveLabel::Rest,
                serials: rest,
            });
        }
        return Ok(waves);
    }
    let n = rest.len();
    if n == 0 {
        return Err(E::InvalidArgument(
            "the groups hold every target: no device is left for --waves".into(),
        ));
    }
    let mut start = 0;
    for (i, size) in sizes.iter().enumerate() {
        let end = match *size {
            WaveSize::Percent(p) => (n * p as usize).div_ceil(100),
            WaveSize::Count(c) => c as usize,
        };
        if end > n {
            return Err(E::InvalidArgument(format!(
                "wave {} ({}) is more than the {n} targets",
                i + 1,
                describe(*size)
            )));
        }
        if end <= start {
            return Err(E::InvalidArgument(format!(
                "wave {} ({} of {n} targets) would be empty: it reaches no further than the wave before",
                i + 1,
                describe(*size)
            )));
        }
        waves.push(Wave {
            label: WaveLabel::Size(*size),
            serials: rest[start..end].to_vec(),
        });
        start = end;
    }
    if start != n {
        return Err(E::InvalidArgument(format!(
            "the last wave ({}) leaves {} of the {n} targets out: end with 100% or {n}",
            describe(sizes[sizes.len() - 1]),
            n - start
        )));
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serials(n: u8) -> Vec<Serial> {
        (0..n).map(|i| Serial([i; 16])).collect()
    }

    fn percent(p: &[u32]) -> Vec<v1::WaveSize> {
        p.iter()
            .map(|p| v1::WaveSize {
                size: Some(v1::wave_size::Size::Percent(*p)),
            })
            .collect()
    }

    #[test]
    fn percentages_are_cumulative_and_rounded_up() {
        let sizes = sizes(&percent(&[10, 40, 100])).unwrap();
        let waves = waves(&serials(20), vec![], &sizes).unwrap();
        let lens: Vec<usize> = waves.iter().map(|w| w.serials.len()).collect();
        assert_eq!(lens, [2, 6, 12]);
        let waves = waves_of(&serials(5), &[10, 40, 100]);
        assert_eq!(waves, [1, 1, 3]);
    }

    fn waves_of(targets: &[Serial], p: &[u32]) -> Vec<usize> {
        waves(targets, vec![], &sizes(&percent(p)).unwrap())
            .unwrap()
            .iter()
            .map(|w| w.serials.len())
            .collect()
    }

    #[test]
    fn groups_come_first_and_the_rest_follows() {
        let all = serials(6);
        let group = OrderId::parse("canary").unwrap();
        let w = waves(&all, vec![(group, all[4..].to_vec())], &[]).unwrap();
        assert_eq!(w[0].serials, all[4..]);
        assert_eq!(w[1].serials, all[..4]);
        assert_eq!(w[1].label, WaveLabel::Rest);
        let none = OrderId::parse("empty").unwrap();
        assert!(waves(&all, vec![(none, vec![])], &[]).is_err());
    }

    #[test]
    fn bad_plans_are_refused() {
        let bad = |p: &[u32]| sizes(&percent(p)).unwrap_err().to_string();
        assert!(
            bad(&[40, 10, 100]).contains("must increase"),
            "{}",
            bad(&[40, 10, 100])
        );
        assert!(bad(&[10, 10, 100]).contains("must increase"));
        assert!(bad(&[0, 100]).contains("between 1% and 100%"));
        assert!(bad(&[10, 101]).contains("between 1% and 100%"));
        let mixed = [
            percent(&[10])[0],
            v1::WaveSize {
                size: Some(v1::wave_size::Size::Count(5)),
            },
        ];
        assert!(sizes(&mixed).unwrap_err().to_string().contains("not both"));
        let short = sizes(&percent(&[10, 50])).unwrap();
        let e = waves(&serials(20), vec![], &short).unwrap_err().to_string();
        assert!(e.contains("leaves 10 of the 20 targets out"), "{e}");
        // 1% and 2% of 10 targets are both 1 device: wave 2 would be empty.
        let tiny = sizes(&percent(&[1, 2, 100])).unwrap();
        let e = waves(&serials(10), vec![], &tiny).unwrap_err().to_string();
        assert!(e.contains("would be empty"), "{e}");
        let t = |p| {
            threshold(Some(&v1::FailureThreshold {
                limit: Some(v1::failure_threshold::Limit::Percent(p)),
            }))
        };
        assert!(t(101).unwrap_err().to_string().contains("above 100%"));
        assert_eq!(t(100).unwrap(), Threshold::Percent(100));
        assert!(threshold(None).is_err());
    }

    #[test]
    fn the_threshold_trips_strictly_above() {
        assert!(!Threshold::Percent(10).exceeded(1, 10));
        assert!(Threshold::Percent(10).exceeded(2, 10));
        assert!(!Threshold::Count(1).exceeded(1, 3));
        assert!(Threshold::Count(1).exceeded(2, 3));
        assert!(Threshold::Percent(0).exceeded(1, 100));
    }
}
