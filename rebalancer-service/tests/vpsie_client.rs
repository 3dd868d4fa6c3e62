//! The VPSie client against the stateful fake (`e2e-tests::vpsie_fake`) over real HTTP.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::vpsie_fake::{
    AuthUsed, FakeConfig, FakeNodeGroup, Fault, MachineState, Route, VpsieFake,
};
use http::Method;
use rebalancer_service::vpsie::{
    AddPolicy, AddRecovery, BreakerConfig, BreakerState, CallEvent, Credentials, DeleteOutcome,
    MachineStatus, RetryPolicy, VpsieClient, VpsieConfig, VpsieError, routes,
};

const TOKEN: &str = "tok-Zq8Xk2-access";
const CLIENT_ID: &str = "cid-Pq91-client";
const CLIENT_SECRET: &str = "csec-Hx55Rr-secret";

fn fake_config() -> FakeConfig {
    FakeConfig {
        token: Some(TOKEN.to_string()),
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(CLIENT_SECRET.to_string()),
        provisioning_delay: Duration::from_millis(150),
        deleting_delay: Duration::from_millis(400),
        ..FakeConfig::default()
    }
}

async fn start(config: FakeConfig) -> VpsieFake {
    VpsieFake::start(config).await.expect("fake starts")
}

fn client_config(fake: &VpsieFake, credentials: Credentials) -> VpsieConfig {
    let mut c = VpsieConfig::new(fake.cluster_id(), credentials);
    c.base_url = fake.base_url();
    c.allow_http = true;
    c.timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    c.breaker = BreakerConfig {
        failure_threshold: 5,
        open_for: Duration::from_millis(500),
    };
    c.add = AddPolicy {
        max_post_attempts: 2,
        listing_polls: 20,
        listing_interval: Duration::from_millis(50),
    };
    c
}

fn token_client(fake: &VpsieFake) -> VpsieClient {
    VpsieClient::new(client_config(fake, Credentials::access_token(TOKEN))).unwrap()
}

fn creds_client(fake: &VpsieFake) -> VpsieClient {
    VpsieClient::new(client_config(
        fake,
        Credentials::client_credentials(CLIENT_ID, CLIENT_SECRET),
    ))
    .unwrap()
}

fn statuses(fake: &VpsieFake, route: Route) -> Vec<Option<u16>> {
    fake.calls_to(route).iter().map(|c| c.status).collect()
}

type Events = Arc<Mutex<Vec<CallEvent>>>;

fn observed_client(config: VpsieConfig) -> (VpsieClient, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let client = VpsieClient::with_observer(
        config,
        Arc::new(move |e: &CallEvent| sink.lock().unwrap().push(e.clone())),
    )
    .unwrap();
    (client, events)
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn access_token_is_sent_as_vpsie_auth_with_contract_headers() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    let cluster = client.get_cluster().await.unwrap();
    assert_eq!(cluster.identifier, fake.cluster_id());
    assert_eq!(cluster.nodes.len(), 1, "the master");
    assert!(cluster.nodes[0].is_master());
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].auth, AuthUsed::AccessToken);
    assert_eq!(calls[0].status, Some(200));
    assert_eq!(calls[0].accept.as_deref(), Some("application/json"));
    let ua = calls[0].user_agent.clone().unwrap();
    assert_eq!(
        ua,
        format!("vpsie-rebalancer/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(fake.logins(), 0);
}

#[tokio::test]
async fn wrong_access_token_is_unauthorized_and_not_retried() {
    let fake = start(fake_config()).await;
    let client =
        VpsieClient::new(client_config(&fake, Credentials::access_token("wrong"))).unwrap();
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "unauthorized", "{err}");
    assert!(err.is_terminal());
    assert_eq!(statuses(&fake, Route::GetCluster), vec![Some(401)]);
    assert_eq!(fake.calls_to(Route::Login).len(), 0);
}

#[tokio::test]
async fn client_credentials_log_in_once_and_send_bearer() {
    let fake = start(fake_config()).await;
    let client = creds_client(&fake);
    client.get_cluster().await.unwrap();
    client.list_node_groups().await.unwrap();
    client.get_cluster().await.unwrap();
    assert_eq!(fake.logins(), 1);
    let login = &fake.calls_to(Route::Login)[0];
    assert_eq!(login.method, Method::POST);
    assert!(
        login
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    );
    let others: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route != Some(Route::Login))
        .collect();
    assert_eq!(others.len(), 3);
    assert!(
        others
            .iter()
            .all(|c| c.auth == AuthUsed::Bearer && c.status == Some(200))
    );
}

#[tokio::test]
async fn token_with_less_than_five_minutes_left_is_renewed() {
    let fake = start(FakeConfig {
        token_ttl: Duration::from_secs(4 * 60),
        ..fake_config()
    })
    .await;
    let client = creds_client(&fake);
    for _ in 0..3 {
        client.get_cluster().await.unwrap();
    }
    assert_eq!(
        fake.logins(),
        3,
        "each call finds the token under the margin"
    );

    let fake = start(FakeConfig {
        token_ttl: Duration::from_secs(10 * 60),
        ..fake_config()
    })
    .await;
    let client = creds_client(&fake);
    for _ in 0..3 {
        client.get_cluster().await.unwrap();
    }
    assert_eq!(fake.logins(), 1, "10 minutes left: no renewal");
}

#[tokio::test]
async fn missing_expires_means_one_hour() {
    let fake = start(FakeConfig {
        omit_expires: true,
        ..fake_config()
    })
    .await;
    let client = creds_client(&fake);
    client.get_cluster().await.unwrap();
    client.get_cluster().await.unwrap();
    assert_eq!(fake.logins(), 1);

    // With a 61-minute margin an assumed one-hour lifetime is always "near expiry".
    let mut config = client_config(
        &fake,
        Credentials::client_credentials(CLIENT_ID, CLIENT_SECRET),
    );
    config.token_refresh_margin = Duration::from_secs(61 * 60);
    let client = VpsieClient::new(config).unwrap();
    client.get_cluster().await.unwrap();
    client.get_cluster().await.unwrap();
    assert_eq!(fake.logins(), 3);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    let fake = start(fake_config()).await;
    let client = creds_client(&fake);
    client.get_cluster().await.unwrap();
    fake.revoke_tokens();
    fake.clear_calls();
    let cluster = client.get_cluster().await.unwrap();
    assert_eq!(cluster.identifier, fake.cluster_id());
    let seq: Vec<(Option<Route>, Option<u16>)> =
        fake.calls().iter().map(|c| (c.route, c.status)).collect();
    assert_eq!(
        seq,
        vec![
            (Some(Route::GetCluster), Some(401)),
            (Some(Route::Login), Some(200)),
            (Some(Route::GetCluster), Some(200)),
        ]
    );
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_final() {
    let fake = start(fake_config()).await;
    let client = creds_client(&fake);
    fake.inject(Route::GetCluster, Fault::Status(401), 5);
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "unauthorized");
    assert_eq!(
        statuses(&fake, Route::GetCluster),
        vec![Some(401), Some(401)]
    );
    assert_eq!(fake.logins(), 2, "the first login, and the one refresh");
}

#[tokio::test]
async fn wrong_client_secret_is_unauthorized_at_login() {
    let fake = start(fake_config()).await;
    let client = VpsieClient::new(client_config(
        &fake,
        Credentials::client_credentials(CLIENT_ID, "not-the-secret"),
    ))
    .unwrap();
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "unauthorized", "{err}");
    assert_eq!(statuses(&fake, Route::Login), vec![Some(401)]);
    assert!(fake.calls_to(Route::GetCluster).is_empty());
}

#[tokio::test]
async fn login_retries_a_transient_failure() {
    let fake = start(fake_config()).await;
    fake.inject(Route::Login, Fault::Status(503), 1);
    let client = creds_client(&fake);
    client.get_cluster().await.unwrap();
    assert_eq!(statuses(&fake, Route::Login), vec![Some(503), Some(200)]);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn add_status_delete_lifecycle() {
    let fake = start(fake_config()).await;
    let turned_running: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = turned_running.clone();
    fake.on_running(move |m| sink.lock().unwrap().push(m.hostname.clone()));
    let client = token_client(&fake);

    let added = client.add_worker("workers").await.unwrap();
    assert_eq!(added.recovery, AddRecovery::Reply);
    assert!(!added.recovered_by_listing());
    assert_eq!(added.status, Some(MachineStatus::Provisioning));
    assert_eq!(added.group_id, 101);
    assert_eq!(added.post_attempts, 1);
    assert_eq!(fake.live_workers().len(), 1);

    let m = client.machine(&added.identifier).await.unwrap();
    assert_eq!(m.hostname, added.hostname);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = client.machine(&added.identifier).await.unwrap();
        if m.status == MachineStatus::Running {
            break;
        }
        assert_eq!(m.status, MachineStatus::Provisioning);
        assert!(Instant::now() < deadline, "never turned running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *turned_running.lock().unwrap(),
        vec![added.hostname.clone()]
    );
    let cluster = client.get_cluster().await.unwrap();
    assert!(
        cluster
            .nodes
            .iter()
            .any(|n| n.identifier == added.identifier && !n.is_master())
    );

    assert_eq!(
        client.delete_worker(&added.identifier).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let del = fake.calls_to(Route::Delete);
    assert_eq!(del.len(), 1);
    assert!(
        del[0]
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let body: serde_json::Value = serde_json::from_str(&del[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"identifier": added.identifier}));
    match client.machine(&added.identifier).await {
        Ok(m) => assert_eq!(m.status, MachineStatus::Deleting),
        Err(e) => assert_eq!(e.kind(), "not_found"),
    }
    assert!(
        fake.wait_for_state(
            &added.identifier,
            MachineState::Gone,
            Duration::from_secs(10)
        )
        .await
    );
    let err = client.machine(&added.identifier).await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert_eq!(
        client.delete_worker(&added.identifier).await.unwrap(),
        DeleteOutcome::AlreadyGone,
        "404 on delete is success"
    );
    assert!(fake.live_workers().is_empty());
}

#[tokio::test]
async fn node_group_ids_are_cached_and_refreshed_on_a_miss() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    assert_eq!(client.group_id("workers").await.unwrap(), 101);
    assert_eq!(client.group_id("workers").await.unwrap(), 101);
    assert_eq!(
        fake.calls_to(Route::ListNodeGroups).len(),
        1,
        "second lookup cached"
    );
    fake.add_node_group(FakeNodeGroup::new(202, "big"));
    assert_eq!(client.group_id("big").await.unwrap(), 202);
    assert_eq!(
        fake.calls_to(Route::ListNodeGroups).len(),
        2,
        "a miss refreshes"
    );
    let err = client.group_id("nope").await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    let err = client.add_worker("nope").await.unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert!(fake.calls_to(Route::Add).is_empty());
}

#[tokio::test]
async fn stuck_machine_stays_provisioning() {
    let fake = start(fake_config()).await;
    fake.inject(Route::Add, Fault::StuckProvisioning, 1);
    let client = token_client(&fake);
    let added = client.add_worker("workers").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        client.machine(&added.identifier).await.unwrap().status,
        MachineStatus::Provisioning
    );
    fake.set_stuck(&added.identifier, false);
    assert!(
        fake.wait_for_state(
            &added.identifier,
            MachineState::Running,
            Duration::from_secs(5)
        )
        .await
    );
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn get_retries_a_5xx_burst_and_succeeds() {
    let fake = start(fake_config()).await;
    let (client, events) = observed_client(client_config(&fake, Credentials::access_token(TOKEN)));
    fake.inject(Route::GetCluster, Fault::Status(503), 3);
    client.get_cluster().await.unwrap();
    assert_eq!(
        statuses(&fake, Route::GetCluster),
        vec![Some(503), Some(503), Some(503), Some(200)]
    );
    let events = events.lock().unwrap();
    let seen: Vec<(&str, Option<u16>, &str, u32)> = events
        .iter()
        .map(|e| (e.route, e.status, e.outcome, e.attempt))
        .collect();
    assert_eq!(
        seen,
        vec![
            (routes::CLUSTER, Some(503), "transient", 1),
            (routes::CLUSTER, Some(503), "transient", 2),
            (routes::CLUSTER, Some(503), "transient", 3),
            (routes::CLUSTER, Some(200), "ok", 4),
        ]
    );
    assert!(events.iter().all(|e| e.method == "GET"));
}

#[tokio::test]
async fn get_gives_up_after_bounded_attempts() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::GetCluster, Fault::Status(500), 100);
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "transient");
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 4);
}

#[tokio::test]
async fn dropped_connection_on_get_is_retried() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::MachineStatus, Fault::DropBeforeApply, 1);
    let err = client.machine("vm-master-1").await;
    assert_eq!(err.unwrap().hostname, "k8s-master-1");
    assert_eq!(statuses(&fake, Route::MachineStatus), vec![None, Some(200)]);
}

#[tokio::test]
async fn delete_retries_5xx() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    let worker = fake.seed_worker("workers");
    fake.inject(Route::Delete, Fault::Status(502), 2);
    assert_eq!(
        client.delete_worker(&worker.identifier).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        statuses(&fake, Route::Delete),
        vec![Some(502), Some(502), Some(200)]
    );
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let fake = start(fake_config()).await;
    let (client, events) = observed_client(client_config(&fake, Credentials::access_token(TOKEN)));
    fake.inject(
        Route::ListNodeGroups,
        Fault::RateLimit {
            retry_after: Some(1),
        },
        1,
    );
    let groups = client.list_node_groups().await.unwrap();
    assert_eq!(groups[0].group_name, "workers");
    assert_eq!(
        statuses(&fake, Route::ListNodeGroups),
        vec![Some(429), Some(200)]
    );
    let outcomes: Vec<&str> = events.lock().unwrap().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec!["rate_limited", "ok"]);
}

#[tokio::test]
async fn rate_limit_without_retry_after_backs_off_and_also_applies_to_add() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::RateLimit { retry_after: None }, 2);
    let added = client.add_worker("workers").await.unwrap();
    assert_eq!(added.recovery, AddRecovery::Reply);
    assert_eq!(
        statuses(&fake, Route::Add),
        vec![Some(429), Some(429), Some(200)],
        "a 429 is a refusal, safe to repeat"
    );
    assert_eq!(fake.live_workers().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Terminal errors

#[tokio::test]
async fn quota_message_fails_at_once_with_one_call() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::quota(), 1);
    let err = client.add_worker("workers").await.unwrap_err();
    assert!(matches!(err, VpsieError::Quota { .. }), "{err:?}");
    assert_eq!(err.kind(), "quota");
    assert!(err.is_terminal());
    assert_eq!(fake.calls_to(Route::Add).len(), 1);
    assert!(fake.live_workers().is_empty());

    // Also on a 5xx status, and on a GET (which would otherwise be retried).
    fake.clear_calls();
    fake.inject(
        Route::Add,
        Fault::ErrorEnvelope {
            status: 503,
            message: "Maximum number of nodes for this plan reached".to_string(),
        },
        1,
    );
    assert_eq!(
        client.add_worker("workers").await.unwrap_err().kind(),
        "quota"
    );
    assert_eq!(fake.calls_to(Route::Add).len(), 1);
    fake.inject(
        Route::GetCluster,
        Fault::ErrorEnvelope {
            status: 500,
            message: "Request exceeds the allowed limit".to_string(),
        },
        1,
    );
    fake.clear_calls();
    assert_eq!(client.get_cluster().await.unwrap_err().kind(), "quota");
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 1);
    assert!(fake.live_workers().is_empty());
}

#[tokio::test]
async fn in_band_error_is_a_failure_and_not_retried() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(
        Route::GetCluster,
        Fault::ErrorEnvelope {
            status: 200,
            message: "Cluster is locked".to_string(),
        },
        1,
    );
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "rejected", "{err}");
    assert!(err.to_string().contains("Cluster is locked"));
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 1);
}

#[tokio::test]
async fn oversized_or_garbage_replies_are_protocol_errors() {
    let fake = start(fake_config()).await;
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.max_body_bytes = 1024;
    let client = VpsieClient::new(config).unwrap();
    fake.inject(
        Route::GetCluster,
        Fault::RawBody {
            status: 200,
            content_type: "application/json".to_string(),
            body: vec![b' '; 4096],
        },
        1,
    );
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "protocol", "{err}");
    assert!(err.to_string().contains("cap"));
    fake.inject(
        Route::GetCluster,
        Fault::RawBody {
            status: 200,
            content_type: "text/html".to_string(),
            body: b"<html>maintenance</html>".to_vec(),
        },
        1,
    );
    assert_eq!(client.get_cluster().await.unwrap_err().kind(), "protocol");
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 2, "not retried");
}

// ---------------------------------------------------------------------------------------------
// The add is never repeated blindly

#[tokio::test]
async fn dropped_connection_during_add_creates_no_duplicate() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::DropConnection, 1);
    let added = client.add_worker("workers").await.unwrap();
    assert!(added.recovered_by_listing());
    match &added.recovery {
        AddRecovery::ListedAfterFailure { error } => {
            assert_eq!(error.kind(), "transient", "{error}");
            assert!(error.is_ambiguous());
        }
        other => panic!("unexpected recovery {other:?}"),
    }
    assert_eq!(
        statuses(&fake, Route::Add),
        vec![None],
        "one POST, no reply"
    );
    let workers = fake.live_workers();
    assert_eq!(workers.len(), 1, "exactly one new machine: {workers:?}");
    assert_eq!(workers[0].identifier, added.identifier);
    assert_eq!(workers[0].hostname, added.hostname);
}

#[tokio::test]
async fn add_that_times_out_creates_no_duplicate() {
    let fake = start(fake_config()).await;
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.timeout = Duration::from_millis(500);
    let client = VpsieClient::new(config).unwrap();
    fake.inject(Route::Add, Fault::Delay(Duration::from_secs(3)), 1);
    let added = client.add_worker("workers").await.unwrap();
    match &added.recovery {
        AddRecovery::ListedAfterFailure { error } => assert_eq!(error.kind(), "timeout"),
        other => panic!("unexpected recovery {other:?}"),
    }
    assert_eq!(fake.calls_to(Route::Add).len(), 1);
    let workers = fake.live_workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].identifier, added.identifier);
}

#[tokio::test]
async fn add_5xx_after_creation_is_found_not_repeated() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::StatusAfterApply(502), 1);
    let added = client.add_worker("workers").await.unwrap();
    assert!(matches!(
        added.recovery,
        AddRecovery::ListedAfterFailure { .. }
    ));
    assert_eq!(statuses(&fake, Route::Add), vec![Some(502)]);
    assert_eq!(fake.live_workers().len(), 1);
}

#[tokio::test]
async fn add_5xx_without_creation_is_sent_again_after_listing() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::Status(500), 1);
    let added = client.add_worker("workers").await.unwrap();
    assert_eq!(added.recovery, AddRecovery::Reply);
    assert_eq!(added.post_attempts, 2);
    assert_eq!(statuses(&fake, Route::Add), vec![Some(500), Some(200)]);
    let calls = fake.calls();
    let first_add = calls
        .iter()
        .position(|c| c.route == Some(Route::Add))
        .unwrap();
    assert!(
        calls[first_add + 1..]
            .iter()
            .take_while(|c| c.route != Some(Route::Add))
            .any(|c| c.route == Some(Route::GetCluster)),
        "the cluster was listed between the two POSTs"
    );
    assert_eq!(fake.live_workers().len(), 1);
}

#[tokio::test]
async fn add_stops_after_bounded_posts_and_reports_unconfirmed() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(Route::Add, Fault::Status(500), 10);
    let err = client.add_worker("workers").await.unwrap_err();
    assert_eq!(err.kind(), "ambiguous", "{err}");
    assert_eq!(fake.calls_to(Route::Add).len(), 2);
    assert!(fake.live_workers().is_empty());
}

#[tokio::test]
async fn add_with_two_unknown_new_machines_fails_closed() {
    let fake = Arc::new(start(fake_config()).await);
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.timeout = Duration::from_millis(800);
    let client = VpsieClient::new(config).unwrap();
    fake.inject(Route::Add, Fault::Delay(Duration::from_secs(3)), 1);
    // Someone else creates a worker while our add is in flight.
    let other = fake.clone();
    let seeder = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while other.calls_to(Route::Add).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        other.seed_worker("workers")
    });
    let err = client.add_worker("workers").await.unwrap_err();
    seeder.await.unwrap();
    assert!(matches!(err, VpsieError::AddUnconfirmed { .. }), "{err:?}");
    assert!(err.to_string().contains("several"), "{err}");
    assert_eq!(fake.calls_to(Route::Add).len(), 1, "never sent again");
    assert_eq!(fake.live_workers().len(), 2);
}

#[tokio::test]
async fn asynchronous_add_without_data_is_found_by_listing() {
    let fake = start(fake_config()).await;
    let client = token_client(&fake);
    fake.inject(
        Route::Add,
        Fault::AsyncCreate {
            visible_after: Duration::from_millis(150),
        },
        1,
    );
    let added = client.add_worker("workers").await.unwrap();
    assert_eq!(added.recovery, AddRecovery::ListedAfterAsyncAccept);
    assert_eq!(added.status, None);
    assert_eq!(fake.calls_to(Route::Add).len(), 1);
    let workers = fake.live_workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].identifier, added.identifier);
    assert_eq!(workers[0].hostname, added.hostname);
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker

#[tokio::test]
async fn circuit_breaker_opens_after_five_failures_and_a_probe_closes_it() {
    let fake = start(fake_config()).await;
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.retry.max_attempts = 1;
    config.breaker.open_for = Duration::from_secs(1);
    let (client, events) = observed_client(config);
    fake.inject(Route::GetCluster, Fault::Status(500), 6);

    for _ in 0..4 {
        assert_eq!(client.get_cluster().await.unwrap_err().kind(), "transient");
    }
    assert!(matches!(
        client.breaker_state(),
        BreakerState::Closed {
            consecutive_failures: 4
        }
    ));
    assert_eq!(client.get_cluster().await.unwrap_err().kind(), "transient");
    assert!(matches!(client.breaker_state(), BreakerState::Open { .. }));

    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "circuit_open");
    let err = client.machine("vm-master-1").await.unwrap_err();
    assert_eq!(err.kind(), "circuit_open", "the breaker covers every route");
    assert_eq!(
        fake.calls_to(Route::GetCluster).len(),
        5,
        "nothing sent while open"
    );
    assert!(fake.calls_to(Route::MachineStatus).is_empty());
    assert_eq!(
        events.lock().unwrap().last().unwrap().outcome,
        "circuit_open"
    );

    // The probe meets the sixth injected failure: open again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(client.get_cluster().await.unwrap_err().kind(), "transient");
    assert!(matches!(client.breaker_state(), BreakerState::Open { .. }));
    assert_eq!(
        client.get_cluster().await.unwrap_err().kind(),
        "circuit_open"
    );

    // The next probe succeeds and closes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.get_cluster().await.unwrap();
    assert_eq!(
        client.breaker_state(),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    client.list_node_groups().await.unwrap();
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 7);
}

#[tokio::test]
async fn retries_stop_when_the_breaker_opens() {
    let fake = start(fake_config()).await;
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.retry.max_attempts = 10;
    let client = VpsieClient::new(config).unwrap();
    fake.inject(Route::GetCluster, Fault::Status(503), 100);
    let err = client.get_cluster().await.unwrap_err();
    assert_eq!(err.kind(), "circuit_open");
    assert_eq!(fake.calls_to(Route::GetCluster).len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Configuration and secrecy

#[tokio::test]
async fn plain_http_is_refused_without_allow_http() {
    let fake = start(fake_config()).await;
    let mut config = client_config(&fake, Credentials::access_token(TOKEN));
    config.allow_http = false;
    let err = VpsieClient::new(config.clone()).unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("http"), "{err}");
    config.allow_http = true;
    let client = VpsieClient::new(config).unwrap();
    client.get_cluster().await.unwrap();
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn credentials_never_appear_in_debug_output_or_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = start(fake_config()).await;
    let creds_config = client_config(
        &fake,
        Credentials::client_credentials(CLIENT_ID, CLIENT_SECRET),
    );
    let creds = VpsieClient::new(creds_config.clone()).unwrap();
    let token_config = client_config(&fake, Credentials::access_token(TOKEN));
    let token = VpsieClient::new(token_config.clone()).unwrap();

    // Exercise logins, refresh after a 401, retries, failures.
    creds.get_cluster().await.unwrap();
    fake.revoke_tokens();
    creds.get_cluster().await.unwrap();
    fake.inject(Route::GetCluster, Fault::Status(503), 1);
    token.get_cluster().await.unwrap();
    let added = creds.add_worker("workers").await.unwrap();
    creds.delete_worker(&added.identifier).await.unwrap();
    let bad = VpsieClient::new(client_config(
        &fake,
        Credentials::client_credentials(CLIENT_ID, "wrong-secret-value"),
    ))
    .unwrap();
    let login_err = bad.get_cluster().await.unwrap_err();

    let mut texts = vec![
        format!("{creds_config:?}"),
        format!("{token_config:?}"),
        format!("{creds_config:#?}"),
        format!("{creds:?}"),
        format!("{token:?}"),
        format!("{login_err:?} {login_err}"),
        format!("{added:?}"),
    ];
    texts.push(String::from_utf8(capture.0.lock().unwrap().clone()).unwrap());
    let logs = texts.last().unwrap().clone();
    assert!(
        logs.contains("VPSie login succeeded"),
        "logs were captured: {logs}"
    );
    assert!(logs.contains("401"), "the refresh was logged: {logs}");
    for text in &texts {
        for secret in [
            TOKEN,
            CLIENT_SECRET,
            CLIENT_ID,
            "wrong-secret-value",
            "fake-bearer-",
        ] {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn default_https_client_builds_with_the_ring_provider() {
    let client = VpsieClient::new(VpsieConfig::new(
        "cluster-1",
        Credentials::access_token(TOKEN),
    ))
    .unwrap();
    assert_eq!(
        client.base_url().as_str(),
        rebalancer_service::vpsie::DEFAULT_BASE_URL
    );
    assert!(!format!("{client:?}").contains(TOKEN));
}
