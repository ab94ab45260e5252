//! The client stack for `longlink-nal-async`: embassy-net 0.9 on the client
//! end of the [`Link`], and a small deterministic executor loop that runs
//! the client's future, embassy-net's runner and the [`Server`] together on
//! the virtual clock.
//!
//! embassy-net reads time through embassy-time, whose mock driver is one
//! global clock per process. [`EmbassyWorld`] therefore holds a process-wide
//! lock for its lifetime (tests that use it run one at a time) and resets
//! the mock driver to 0 when it starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};

use crate::clock::VirtualClock;
use crate::link::{Link, Side, ETHERNET_MTU};
use crate::server::{Server, CLIENT_IP, CLIENT_MAC, PREFIX_LEN};

pub use embassy_net;
pub use embassy_time;

/// One embassy world at a time per process (embassy-time's mock driver is
/// global).
static WORLD: Mutex<()> = Mutex::new(());

/// The client end of the link as an [`embassy_net_driver::Driver`].
#[derive(Debug)]
pub struct EmbassyDevice {
    link: Link,
}

/// A received frame.
#[derive(Debug)]
pub struct Rx(Vec<u8>);

/// A frame to send.
#[derive(Debug)]
pub struct Tx(Link);

impl embassy_net_driver::RxToken for Rx {
    fn consume<R, F>(mut self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for Tx {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.transmit_frame(Side::Client, frame);
        r
    }
}

impl embassy_net_driver::Driver for EmbassyDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx, Tx)> {
        let frame = self.link.take_or_register(Side::Client, cx)?;
        Some((Rx(frame), Tx(self.link.clone())))
    }

    fn transmit(&mut self, _: &mut Context<'_>) -> Option<Tx> {
        Some(Tx(self.link.clone()))
    }

    fn link_state(&mut self, _: &mut Context<'_>) -> LinkState {
        // A pulled cable here is silent loss, the harder case: the PHY
        // keeps reporting the link up.
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = ETHERNET_MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(CLIENT_MAC)
    }
}

/// embassy-net's configuration for the client: [`CLIENT_IP`]/24, static.
pub fn client_config() -> embassy_net::Config {
    embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(CLIENT_IP, PREFIX_LEN),
        gateway: None,
        dns_servers: Default::default(),
    })
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Rounds of (client, server) within one virtual millisecond before time
/// moves on regardless: bounds a client that wakes itself for ever.
const ROUNDS_PER_MS: usize = 10_000;

/// A waker that raises a flag.
fn flag_waker() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    (flag.clone(), Waker::from(flag))
}

/// The link, the clock, the server and an executor loop for one async
/// client (see the module docs).
///
/// The loop runs two tasks, each with its own waker as on a real embassy
/// executor: embassy-net's runner, and the client (the code under test).
/// One waker for both would spin: every socket call wakes the runner, and
/// a runner woken with the client would poll the client again.
pub struct EmbassyWorld {
    /// The cable.
    pub link: Link,
    /// The virtual clock (drives embassy-time too).
    pub clock: VirtualClock,
    /// The scripted server.
    pub server: Server,
    runner: (Arc<Flag>, Waker),
    client: (Arc<Flag>, Waker),
    /// Times the client task was polled, for "does not spin" checks.
    pub client_polls: u64,
    /// Times the runner task was polled.
    pub runner_polls: u64,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for EmbassyWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbassyWorld")
            .field("now_ms", &self.clock.now_ms())
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Default for EmbassyWorld {
    fn default() -> Self {
        Self::new()
    }
}

fn poll_task<F: Future + ?Sized>(
    task: &(Arc<Flag>, Waker),
    fut: Pin<&mut F>,
    polls: &mut u64,
) -> Option<Poll<F::Output>> {
    if !task.0 .0.swap(false, Ordering::SeqCst) {
        return None;
    }
    *polls += 1;
    let mut cx = Context::from_waker(&task.1);
    Some(fut.poll(&mut cx))
}

impl EmbassyWorld {
    /// Waits for any other world in this process to end, then resets
    /// embassy-time to 0 and builds the link and server.
    pub fn new() -> Self {
        let guard = WORLD
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        embassy_time::MockDriver::get().reset();
        let clock = VirtualClock::driving_embassy_time();
        let link = Link::new(&clock);
        let server = Server::new(&link, &clock);
        EmbassyWorld {
            link,
            clock,
            server,
            runner: flag_waker(),
            client: flag_waker(),
            client_polls: 0,
            runner_polls: 0,
            _one_at_a_time: guard,
        }
    }

    /// The embassy-net driver for the client end.
    pub fn device(&self) -> EmbassyDevice {
        EmbassyDevice {
            link: self.link.clone(),
        }
    }

    /// Runs `runner` (embassy-net's `Runner::run()`) and `client` (the
    /// code under test) until `done` holds or `max_ms` of virtual time
    /// passed. Returns `Ok(true)` when `done` held, `Ok(false)` on
    /// timeout, `Err(output)` if the client future completed.
    ///
    /// Within a millisecond, runner, client and server take turns until
    /// none has anything to do; then the clock moves 1 ms. `done` is
    /// checked once per millisecond.
    pub fn run_until<A: Future + ?Sized, B: Future + ?Sized>(
        &mut self,
        mut runner: Pin<&mut A>,
        mut client: Pin<&mut B>,
        max_ms: u64,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<bool, B::Output> {
        // Fresh futures have never been polled: make sure they are.
        self.runner.0 .0.store(true, Ordering::SeqCst);
        self.client.0 .0.store(true, Ordering::SeqCst);
        let end = self.clock.now_ms() + max_ms;
        loop {
            for _ in 0..ROUNDS_PER_MS {
                let mut progress = false;
                // The runner never completes (`-> !`); if one did, it is
                // simply not polled again.
                if let Some(p) = poll_task(&self.runner, runner.as_mut(), &mut self.runner_polls) {
                    progress = true;
                    if p.is_ready() {
                        self.runner.0 .0.store(false, Ordering::SeqCst);
                    }
                }
                if let Some(p) = poll_task(&self.client, client.as_mut(), &mut self.client_polls) {
                    progress = true;
                    if let Poll::Ready(out) = p {
                        return Err(out);
                    }
                }
                progress |= self.server.poll();
                if !progress {
                    break;
                }
            }
            if done(self) {
                return Ok(true);
            }
            if self.clock.now_ms() >= end {
                return Ok(false);
            }
            self.clock.advance(1);
        }
    }

    /// Runs both for `ms` of virtual time.
    pub fn run_for<A: Future + ?Sized, B: Future + ?Sized>(
        &mut self,
        runner: Pin<&mut A>,
        client: Pin<&mut B>,
        ms: u64,
    ) -> Result<(), B::Output> {
        self.run_until(runner, client, ms, |_| false).map(drop)
    }
}
