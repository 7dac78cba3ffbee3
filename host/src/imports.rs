//! The state of one evaluation's store and the host side of the policy's
//! imports: the bureau (asked at most once per question, for the applicant
//! under evaluation only), the evaluation context, and logging.

use std::sync::Arc;

use jiff::civil::Date;
use loan_core::{BureauAnswers, Cpf};
use rust_decimal::Decimal;
use uuid::Uuid;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::loan::policy::context::EvaluationContext as WitContext;
use crate::bindings::loan::policy::{bureau, context, log, types};
use crate::bindings::wit;
use crate::bureau::{Bureau, BureauError, check_commitment, check_score};
use crate::sandbox::{self, ComputeBudget, MemoryCap};

/// Most log lines one evaluation may write; the rest are dropped.
const MAX_LOG_LINES: u32 = 64;
/// Longest log line kept, in characters; longer ones are cut.
const MAX_LOG_CHARS: usize = 1024;

/// Everything one evaluation's store holds.
pub(crate) struct EvalState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) budget: Arc<ComputeBudget>,
    applicant: Option<Applicant>,
    context: WitContext,
    log: LogTags,
}

/// The applicant under evaluation, known to the host only.
pub(crate) struct Applicant {
    cpf: Cpf,
    bureau: Arc<dyn Bureau>,
    score: Option<Result<u16, BureauError>>,
    commitment: Option<Result<Decimal, BureauError>>,
}

impl Applicant {
    pub(crate) fn new(cpf: Cpf, bureau: Arc<dyn Bureau>) -> Self {
        Applicant {
            cpf,
            bureau,
            score: None,
            commitment: None,
        }
    }
}

/// What every log line of the policy is tagged with.
pub(crate) struct LogTags {
    pub(crate) loan_id: Option<Uuid>,
    pub(crate) policy: String,
    lines: u32,
}

impl LogTags {
    pub(crate) fn new(loan_id: Option<Uuid>, policy: String) -> Self {
        LogTags {
            loan_id,
            policy,
            lines: 0,
        }
    }
}

impl EvalState {
    /// A fresh state for one evaluation. `applicant` is `None` when the
    /// policy is only asked for its name: its bureau questions then fail.
    pub(crate) fn new(
        applicant: Option<Applicant>,
        today: Date,
        time_zone: &str,
        log: LogTags,
        memory_limit: usize,
        budget: Arc<ComputeBudget>,
    ) -> Self {
        EvalState {
            wasi: sandbox::wasi_context(),
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_limit),
            budget,
            applicant,
            context: WitContext {
                today: wit_date(today),
                time_zone: time_zone.to_owned(),
            },
            log,
        }
    }

    /// The answers the bureau gave, for the decision record.
    pub(crate) fn bureau_answers(&self) -> BureauAnswers {
        let Some(applicant) = &self.applicant else {
            return BureauAnswers::default();
        };
        BureauAnswers {
            score: applicant.score.clone().and_then(Result::ok),
            commitment: applicant
                .commitment
                .clone()
                .and_then(Result::ok)
                .map(|c| c.to_string()),
        }
    }

    /// The first bureau failure of this evaluation, if any.
    pub(crate) fn bureau_failure(&self) -> Option<BureauError> {
        let applicant = self.applicant.as_ref()?;
        failure(&applicant.score).or_else(|| failure(&applicant.commitment))
    }
}

fn failure<T>(answer: &Option<Result<T, BureauError>>) -> Option<BureauError> {
    match answer {
        Some(Err(error)) => Some(error.clone()),
        _ => None,
    }
}

/// A date as the WIT package writes it.
pub(crate) fn wit_date(date: Date) -> wit::Date {
    wit::Date {
        year: i32::from(date.year()),
        // jiff guarantees 1..=12 and 1..=31, so the casts cannot lose bits.
        month: date.month() as u8,
        day: date.day() as u8,
    }
}

impl WasiView for EvalState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl From<BureauError> for wit::BureauError {
    fn from(error: BureauError) -> Self {
        match error {
            BureauError::Unavailable(reason) => wit::BureauError::Unavailable(reason),
            BureauError::InvalidAnswer(reason) => wit::BureauError::InvalidAnswer(reason),
        }
    }
}

impl From<wit::BureauError> for BureauError {
    fn from(error: wit::BureauError) -> Self {
        match error {
            wit::BureauError::Unavailable(reason) => BureauError::Unavailable(reason),
            wit::BureauError::InvalidAnswer(reason) => BureauError::InvalidAnswer(reason),
        }
    }
}

fn no_applicant() -> BureauError {
    BureauError::Unavailable("no applicant is under evaluation".to_owned())
}

impl types::Host for EvalState {}

impl bureau::Host for EvalState {
    async fn score(&mut self) -> Result<u16, wit::BureauError> {
        let applicant = self.applicant.as_mut().ok_or_else(no_applicant)?;
        let answer = match &applicant.score {
            Some(answer) => answer.clone(),
            None => {
                let _paused = self.budget.pause();
                let answer = applicant.bureau.score(&applicant.cpf).await;
                applicant.score.insert(answer.and_then(check_score)).clone()
            }
        };
        Ok(answer?)
    }

    async fn commitment(&mut self) -> Result<String, wit::BureauError> {
        let applicant = self.applicant.as_mut().ok_or_else(no_applicant)?;
        let answer = match &applicant.commitment {
            Some(answer) => answer.clone(),
            None => {
                let _paused = self.budget.pause();
                let answer = applicant.bureau.commitment(&applicant.cpf).await;
                applicant
                    .commitment
                    .insert(answer.and_then(check_commitment))
                    .clone()
            }
        };
        Ok(answer?.to_string())
    }
}

impl context::Host for EvalState {
    fn current(&mut self) -> WitContext {
        self.context.clone()
    }
}

impl log::Host for EvalState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log.lines += 1;
        if self.log.lines > MAX_LOG_LINES {
            return;
        }
        let message: String = match message.char_indices().nth(MAX_LOG_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        let loan_id = self.log.loan_id.map(tracing::field::display);
        let policy = self.log.policy.as_str();
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "loan_host::policy",
                    $level,
                    loan_id,
                    policy,
                    "{message}"
                )
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
        if self.log.lines == MAX_LOG_LINES {
            tracing::debug!(loan_id, policy, "the policy reached its log line limit");
        }
    }
}
