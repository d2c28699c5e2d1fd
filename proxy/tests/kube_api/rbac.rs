//! deploy/base/rbac.yaml against the real authorizer: enough for everything tidegate does, and
//! nothing more.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use tidegate_common::BackendState;
use tidegate_proxy::target::ScaleTarget;
use tidegate_proxy::target::deployment::DELETION_COST_ANNOTATION;

use crate::kube_support::*;
use crate::support::{Backend, wait_until};
use crate::{config, scaled_events, time_until, with_lease};

/// Applies deploy/base/rbac.yaml's Role in `ns` and binds it to the start script's `test-user`.
async fn grant_shipped_role(admin: &kube::Client, ns: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/rbac.yaml");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut role = docs.into_iter().find(|d| d["kind"] == "Role").unwrap();
    role["metadata"]["namespace"] = ns.into();
    let role: Role = serde_json::from_value(role).unwrap();
    let pp = Default::default();
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tidegate-test-user"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tidegate"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "test-user"}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&pp, &binding)
        .await
        .unwrap();
}

async fn forbidden<T: std::fmt::Debug>(what: &str, r: kube::Result<T>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a kube-apiserver (see deploy/README.md)"]
async fn the_shipped_role_is_enough_and_no_more() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::{DeleteParams, Patch, PatchParams};
    let admin = client(ADMIN).await;
    let ns = namespace(&admin, "rbac").await;
    create_deployment(&admin, &ns, "echo", 2).await;
    create_deployment(&admin, &ns, "other", 1).await;
    let (a, b) = (Backend::start().await, Backend::start().await);
    for (be, name) in [(&a, "echo-a"), (&b, "echo-b")] {
        create_pod(&admin, &ns, name, "echo").await;
        put_slice(&admin, &ns, slice("echo", name, be.addr, name, READY)).await;
    }
    grant_shipped_role(&admin, &ns).await;
    let user = client(TEST_USER).await;
    wait_until("the role is in force", || async {
        Api::<Deployment>::namespaced(user.clone(), &ns)
            .get("echo")
            .await
            .is_ok()
    })
    .await;

    let only = ["kube-discovery", "kube-leader", "kube-deployment"];
    let run = Running::start(with_lease(config(&ns, TEST_USER, true), &ns, "rbac"), &only);
    let table = run.table();
    time_until(table, b.addr, Some(BackendState::Ready)).await;
    wait_until("leading with the shipped role", || async { run.leading() }).await;
    run.target().set_desired(3, 3);
    wait_until("scaled up as test-user", || async {
        replicas(&admin, &ns, "echo").await == 3
    })
    .await;
    let _held = table.try_reserve(Instant::now(), &[b.addr]).unwrap();
    run.target().set_desired(1, 1);
    wait_until("scaled down as test-user", || async {
        replicas(&admin, &ns, "echo").await == 1
    })
    .await;
    let cost = pod_annotation(&admin, &ns, "echo-b", DELETION_COST_ANNOTATION).await;
    assert_eq!(
        cost.as_deref(),
        Some("-1000"),
        "the empty pod is the victim"
    );
    assert!(scaled_events(&admin, &ns).await.len() >= 2);
    let forbidden_writes = run.metric("tidegate_scaler_errors_total{kind=\"forbidden\"}");
    assert_eq!(forbidden_writes.unwrap_or(0.0), 0.0);

    let deployments = Api::<Deployment>::namespaced(user.clone(), &ns);
    let patch = serde_json::json!({"spec": {"replicas": 9}});
    let pp = PatchParams::default();
    forbidden(
        "scale another Deployment",
        deployments
            .patch_scale("other", &pp, &Patch::Merge(&patch))
            .await,
    )
    .await;
    forbidden(
        "patch the Deployment itself",
        deployments.patch("echo", &pp, &Patch::Merge(&patch)).await,
    )
    .await;
    let pods = Api::<Pod>::namespaced(user.clone(), &ns);
    forbidden(
        "delete a pod",
        pods.delete("echo-a", &DeleteParams::default()).await,
    )
    .await;
    forbidden(
        "list secrets",
        Api::<Secret>::namespaced(user.clone(), &ns)
            .list(&ListParams::default())
            .await,
    )
    .await;
    forbidden(
        "read another Lease",
        Api::<Lease>::namespaced(user, &ns).get("other").await,
    )
    .await;
    run.stop().await;
}
