//! A route's JWT requirement, as Envoy's `JwtRequirement`: one provider, any of, all of, allow missing,
//! allow missing or failed. Evaluation is pure: the caller says what each provider concluded.

use super::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The provider (index into the policy's providers) must verify a token.
    Provider(usize),
    /// At least one must be satisfied (Envoy `requires_any`).
    Any(Vec<Requirement>),
    /// Every one must be satisfied (Envoy `requires_all`).
    All(Vec<Requirement>),
    /// No token is fine; a token that is present must verify with some provider.
    AllowMissing,
    /// Always satisfied; tokens that verify still produce their claim headers.
    AllowMissingOrFailed,
}

impl Requirement {
    /// Evaluates the requirement. `check(p)` verifies the request's token for provider `p` (the caller
    /// memoises it); `all_providers` is how many providers the policy has, for the `allow_*` forms.
    pub fn evaluate(&self, check: &mut dyn FnMut(usize) -> Status, all_providers: usize) -> Status {
        match self {
            Requirement::Provider(p) => check(*p),
            Requirement::All(children) => {
                for child in children {
                    let status = child.evaluate(check, all_providers);
                    if status != Status::Ok {
                        return status;
                    }
                }
                Status::Ok
            }
            Requirement::Any(children) => {
                // As Envoy: report the last failure that is about the token itself, not "this token is
                // not for that provider" (missing / unknown issuer), when there is one.
                let mut reported = Status::JwtMissed;
                for child in children {
                    let status = child.evaluate(check, all_providers);
                    if status == Status::Ok {
                        return Status::Ok;
                    }
                    if !matches!(status, Status::JwtMissed | Status::JwtUnknownIssuer)
                        || reported == Status::JwtMissed
                    {
                        reported = status;
                    }
                }
                reported
            }
            Requirement::AllowMissing => {
                let mut failure = None;
                for p in 0..all_providers {
                    match check(p) {
                        Status::Ok => return Status::Ok,
                        Status::JwtMissed => {}
                        Status::JwtUnknownIssuer if failure.is_some() => {}
                        other => failure = Some(other),
                    }
                }
                failure.unwrap_or(Status::Ok)
            }
            Requirement::AllowMissingOrFailed => {
                for p in 0..all_providers {
                    if check(p) == Status::Ok {
                        break;
                    }
                }
                Status::Ok
            }
        }
    }

    /// Every provider the requirement can consult.
    pub fn providers(&self, all_providers: usize, out: &mut Vec<usize>) {
        match self {
            Requirement::Provider(p) => out.push(*p),
            Requirement::Any(children) | Requirement::All(children) => children
                .iter()
                .for_each(|c| c.providers(all_providers, out)),
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {
                out.extend(0..all_providers)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Requirement::*;

    fn eval(req: &Requirement, outcomes: &[Status]) -> Status {
        req.evaluate(&mut |p| outcomes[p], outcomes.len())
    }

    #[test]
    fn one_provider_gives_its_own_status() {
        assert_eq!(
            eval(&Provider(1), &[Status::Ok, Status::JwtExpired]),
            Status::JwtExpired
        );
    }

    #[test]
    fn any_is_satisfied_by_one_and_reports_a_real_failure_over_missing() {
        let any = Any(vec![Provider(0), Provider(1)]);
        assert_eq!(eval(&any, &[Status::JwtMissed, Status::Ok]), Status::Ok);
        assert_eq!(
            eval(&any, &[Status::JwtExpired, Status::JwtUnknownIssuer]),
            Status::JwtExpired
        );
        assert_eq!(
            eval(&any, &[Status::JwtUnknownIssuer, Status::JwtMissed]),
            Status::JwtUnknownIssuer
        );
        assert_eq!(
            eval(&any, &[Status::JwtMissed, Status::JwtMissed]),
            Status::JwtMissed
        );
    }

    #[test]
    fn all_needs_every_provider() {
        let all = All(vec![Provider(0), Provider(1)]);
        assert_eq!(eval(&all, &[Status::Ok, Status::Ok]), Status::Ok);
        assert_eq!(
            eval(&all, &[Status::Ok, Status::JwtMissed]),
            Status::JwtMissed
        );
    }

    #[test]
    fn allow_missing_accepts_no_token_but_not_a_bad_one() {
        assert_eq!(
            eval(&AllowMissing, &[Status::JwtMissed, Status::JwtMissed]),
            Status::Ok
        );
        assert_eq!(
            eval(
                &AllowMissing,
                &[Status::JwtVerificationFail, Status::JwtMissed]
            ),
            Status::JwtVerificationFail
        );
        assert_eq!(
            eval(&AllowMissing, &[Status::JwtUnknownIssuer, Status::Ok]),
            Status::Ok
        );
    }

    #[test]
    fn allow_missing_or_failed_always_passes() {
        assert_eq!(
            eval(&AllowMissingOrFailed, &[Status::JwtExpired]),
            Status::Ok
        );
    }

    #[test]
    fn nested_requirements_combine_like_envoy() {
        // (A and B) or C
        let req = Any(vec![All(vec![Provider(0), Provider(1)]), Provider(2)]);
        assert_eq!(
            eval(&req, &[Status::Ok, Status::JwtExpired, Status::Ok]),
            Status::Ok
        );
        assert_eq!(
            eval(&req, &[Status::Ok, Status::JwtExpired, Status::JwtMissed]),
            Status::JwtExpired
        );
    }
}
